-- worker_alive: the heartbeat of worker $1 with status $2 ('running' or
-- 'stopping'); when its row was pruned, it is registered again under the same
-- id from hostname $3, pid $4, queues $5 and listening $6. Returns the status
-- and whether the worker was registered again. The statement is the function
-- of the same name, in sql/functions/worker_alive.sql.
SELECT * FROM :"schema".worker_alive($1::bigint, $2::text, $3::text, $4::integer, $5::text[], $6::boolean)
