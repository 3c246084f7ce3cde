-- message_peek: $1 queue, $2 limit. Read messages in delivery order without
-- leasing them (for operators and debugging); state is ready, in_flight or
-- delayed.
-- The statement is the function of the same name, in sql/functions/message_peek.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".message_peek($1::text, $2::bigint)
