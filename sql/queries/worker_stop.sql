-- worker_stop: $1 worker id. Marks a worker that shut down cleanly.
-- The statement is the function of the same name, in sql/functions/worker_stop.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".worker_stop($1::bigint)
