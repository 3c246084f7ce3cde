-- message_cancel: cancel messages $1 (ids): one row per id (outcome, status).
-- The statement is the function of the same name, in sql/functions/message_cancel.sql.
SELECT * FROM :"schema".message_cancel($1::bigint[])
