-- queue_create: $1 name, $2 visibility timeout (seconds), $3 max attempts.
-- Returns the new queue, or no row when it already exists.
INSERT INTO :"schema".queues (name, visibility_timeout, max_attempts)
VALUES ($1, make_interval(secs => $2::float8), $3::integer)
ON CONFLICT (name) DO NOTHING
RETURNING name, extract(epoch FROM visibility_timeout)::float8 AS visibility_timeout,
          max_attempts, paused, created_at
