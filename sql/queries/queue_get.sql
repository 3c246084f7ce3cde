-- queue_get: $1 name.
SELECT name, extract(epoch FROM visibility_timeout)::float8 AS visibility_timeout,
       max_attempts, paused, created_at
FROM :"schema".queues
WHERE name = $1
