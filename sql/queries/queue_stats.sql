-- queue_stats: $1 name. One row when the queue exists.
WITH q AS (
    SELECT name, paused FROM :"schema".queues WHERE name = $1
),
m AS (
    SELECT count(*) FILTER (WHERE visible_at <= now()) AS ready,
           count(*) FILTER (WHERE visible_at > now() AND lease IS NOT NULL) AS in_flight,
           count(*) FILTER (WHERE visible_at > now() AND lease IS NULL) AS delayed,
           extract(epoch FROM now() - min(enqueued_at) FILTER (WHERE visible_at <= now()))::float8
               AS oldest_ready_age
    FROM :"schema".messages
    WHERE queue = $1
),
a AS (
    SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb) AS archived
    FROM (SELECT status, count(*) AS n FROM :"schema".archive WHERE queue = $1 GROUP BY status) s
),
x AS (
    -- The backend whose snapshot is oldest: while it stays open, vacuum
    -- cannot remove dead message rows, and every dequeue slows down.
    SELECT pid AS oldest_xmin_pid,
           extract(epoch FROM now() - xact_start)::float8 AS oldest_xmin_age
    FROM pg_stat_activity
    WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
    ORDER BY age(backend_xmin) DESC
    LIMIT 1
)
SELECT q.name, q.paused, m.ready, m.in_flight, m.delayed, m.oldest_ready_age, a.archived,
       x.oldest_xmin_pid, x.oldest_xmin_age
FROM q CROSS JOIN m CROSS JOIN a LEFT JOIN x ON true
