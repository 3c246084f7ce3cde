-- message_set_progress: record progress $3 (JSON text) of message $1, fenced by lease $2.
-- The statement is the function of the same name, in sql/functions/message_set_progress.sql.
SELECT * FROM :"schema".message_set_progress($1::bigint, $2::uuid, $3::text)
