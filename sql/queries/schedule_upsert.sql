-- schedule_upsert: name, queue, payload (JSON text), headers (JSON text), priority, cron, interval_seconds, time_zone, missed, replace.
-- The statement is the function of the same name, in sql/functions/schedule_upsert.sql.
SELECT * FROM :"schema".schedule_upsert($1::text, $2::text, $3::text, $4::text, $5::integer, $6::text, $7::bigint, $8::text, $9::text, $10::boolean)
