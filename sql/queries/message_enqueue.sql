-- message_enqueue: enqueue messages, with dedup keys: queue $1, then one array
-- element per message: payloads $2, priorities $3, delays $4, available_at $5,
-- dedup keys $6, headers $7, groups $8.
-- The statement is the function of the same name, in sql/functions/message_enqueue.sql;
-- no row when the queue is missing.
SELECT * FROM :"schema".message_enqueue($1::text, $2::text[], $3::integer[], $4::float8[], $5::timestamptz[], $6::text[], $7::text[], $8::text[])
