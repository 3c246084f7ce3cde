-- worker_register: $1 hostname, $2 pid, $3 queues text[], $4 whether the worker
-- LISTENs for enqueues. Returns the id.
-- The statement is the function of the same name, in sql/functions/worker_register.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".worker_register($1::text, $2::integer, $3::text[], $4::boolean)
