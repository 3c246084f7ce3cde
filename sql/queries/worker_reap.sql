-- worker_reap: $1 seconds without heartbeat before a worker is marked dead,
-- $2 seconds after which stopped and dead workers are pruned. Leases need no
-- reaping: a dead worker's messages come back when their leases expire.
WITH marked AS (
    UPDATE :"schema".workers
    SET status = 'dead', stopped_at = now()
    WHERE status IN ('running', 'stopping')
      AND heartbeat_at < now() - make_interval(secs => $1::float8)
    RETURNING id
),
pruned AS (
    DELETE FROM :"schema".workers
    WHERE status IN ('stopped', 'dead')
      AND coalesce(stopped_at, heartbeat_at) < now() - make_interval(secs => $2::float8)
    RETURNING id
)
SELECT (SELECT count(*) FROM marked) AS marked_dead, (SELECT count(*) FROM pruned) AS pruned
