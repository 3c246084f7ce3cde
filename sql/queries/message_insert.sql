-- message_insert: enqueue messages without dedup keys: queue $1, payloads $2 (one
-- JSON array text), priority $3, delay $4, available_at $5, headers $6.
-- The statement is the function of the same name, in
-- sql/migrations/0002_functions.sql (its plan is cached by the server).
SELECT * FROM :"schema".message_insert($1::text, $2::text, $3::integer, $4::float8, $5::timestamptz, $6::text)
