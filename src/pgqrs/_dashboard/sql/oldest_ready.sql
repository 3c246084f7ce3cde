-- dashboard_oldest_ready: $1 queue, $2 rows looked at per priority. Seconds
-- since the oldest ready message of the queue was enqueued. A loose index
-- scan over the queue's distinct priorities (messages_dequeue_idx), then per
-- priority the first ready row in id order (ids follow enqueue order), within
-- the first $2 rows: bounded however big the queue is.
WITH RECURSIVE p(priority) AS (
    (SELECT priority FROM :"schema".messages WHERE queue = $1 ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT m.priority FROM :"schema".messages m
            WHERE m.queue = $1 AND m.priority < p.priority
            ORDER BY m.priority DESC LIMIT 1)
    FROM p
    WHERE p.priority IS NOT NULL
)
SELECT extract(epoch FROM now() - min(f.enqueued_at))::float8 AS oldest_ready_age
FROM p
CROSS JOIN LATERAL (
    SELECT w.enqueued_at
    FROM (SELECT enqueued_at, visible_at FROM :"schema".messages m
          WHERE m.queue = $1 AND m.priority = p.priority
          ORDER BY m.id
          LIMIT $2) w
    WHERE w.visible_at <= now()
    LIMIT 1
) f
WHERE p.priority IS NOT NULL
