-- queues: every queue ($2 NULL) or queue $2, with every column of its row as
-- JSON (so limits added to the queues table later show without a change
-- here), and a bounded look at its messages: `sampled` counts the first $1
-- entries of messages_dequeue_idx (an index-only scan); only when the queue
-- has fewer than $1 messages are they read and classified, exactly. For a
-- bigger one the caller asks the planner for estimates, so no request walks a
-- whole queue.
SELECT q.name, to_jsonb(q) AS row, c.sampled, s.ready, s.in_flight, s.delayed
FROM :"schema".queues q
CROSS JOIN LATERAL (
    SELECT count(*) AS sampled
    FROM (SELECT 1 FROM :"schema".messages
          WHERE queue = q.name
          ORDER BY priority DESC, id
          LIMIT $1) m
) c
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE m.visible_at <= now()) AS ready,
           count(*) FILTER (WHERE m.visible_at > now() AND m.lease IS NOT NULL) AS in_flight,
           count(*) FILTER (WHERE m.visible_at > now() AND m.lease IS NULL) AS delayed
    FROM (SELECT visible_at, lease
          FROM :"schema".messages
          WHERE queue = q.name AND c.sampled < $1
          ORDER BY priority DESC, id  -- the index, not a scan, even for a rare queue
          LIMIT $1) m
) s
WHERE $2::text IS NULL OR q.name = $2::text
ORDER BY q.name
