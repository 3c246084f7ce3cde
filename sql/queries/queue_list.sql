-- queue_list: every queue, by name.
SELECT name, extract(epoch FROM visibility_timeout)::float8 AS visibility_timeout,
       max_attempts, paused, created_at
FROM :"schema".queues
ORDER BY name
