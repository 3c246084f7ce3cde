-- workers: the $1 most recent workers (running and stopping first), with the
-- seconds since their heartbeat.
SELECT w.id, w.hostname, w.pid, w.queues, w.started_at, w.heartbeat_at, w.stopped_at, w.status,
       extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age
FROM :"schema".workers w
ORDER BY (w.status IN ('running', 'stopping')) DESC, w.id DESC
LIMIT $1
