-- message_insert: enqueue messages without dedup keys: queue $1, payloads $2 (one
-- JSON array text), priority $3, delay $4, available_at $5, headers $6, group $7.
-- The statement is the function of the same name, in sql/functions/message_insert.sql;
-- no row when the queue is missing.
SELECT * FROM :"schema".message_insert($1::text, $2::text, $3::integer, $4::float8, $5::timestamptz, $6::text, $7::text)
