-- message_cancelled: the messages worker $1 holds whose cancellation was requested.
-- The statement is the function of the same name, in sql/functions/message_cancelled.sql.
SELECT * FROM :"schema".message_cancelled($1::bigint)
