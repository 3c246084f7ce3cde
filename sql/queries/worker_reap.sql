-- worker_reap: $1 seconds without heartbeat before a worker is marked dead,
-- $2 seconds after which stopped and dead workers are pruned.
-- The statement is the function of the same name, in sql/functions/worker_reap.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".worker_reap($1::float8, $2::float8)
