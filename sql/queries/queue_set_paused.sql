-- queue_set_paused: $1 name, $2 paused. A paused queue keeps accepting
-- messages but delivers none.
-- The statement is the function of the same name, in sql/functions/queue_set_paused.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".queue_set_paused($1::text, $2::boolean)
