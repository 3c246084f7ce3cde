-- dashboard_queues: every queue, with every column of its row as JSON (so
-- limits added to the queues table later show without a change here), and
-- per queue a bounded look at its messages: the first $1 rows in delivery
-- order (index messages_dequeue_idx), classified. A queue with fewer rows is
-- counted exactly; a bigger one is estimated by the caller (EXPLAIN), so no
-- request walks a whole queue.
SELECT q.name, to_jsonb(q) AS row, s.sampled, s.ready, s.in_flight, s.delayed
FROM :"schema".queues q
CROSS JOIN LATERAL (
    SELECT count(*) AS sampled,
           count(*) FILTER (WHERE m.visible_at <= now()) AS ready,
           count(*) FILTER (WHERE m.visible_at > now() AND m.lease IS NOT NULL) AS in_flight,
           count(*) FILTER (WHERE m.visible_at > now() AND m.lease IS NULL) AS delayed
    FROM (SELECT visible_at, lease
          FROM :"schema".messages
          WHERE queue = q.name
          ORDER BY priority DESC, id
          LIMIT $1) m
) s
ORDER BY q.name
