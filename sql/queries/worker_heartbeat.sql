-- worker_heartbeat: $1 worker id, $2 status ('running' or 'stopping').
-- Returns the row's status; a worker that was marked dead (it missed its
-- heartbeats) comes back to life here.
-- The statement is the function of the same name, in sql/functions/worker_heartbeat.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".worker_heartbeat($1::bigint, $2::text)
