-- queue_get: $1 name. No row when there is no such queue.
-- The statement is the function of the same name, in sql/functions/queue_get.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".queue_get($1::text)
