-- running: messages held right now by a worker, found in the first $1 rows of
-- each queue in delivery order (messages_dequeue_idx; leased messages are
-- the oldest ones, at the front). leased_by has no index: this bound keeps
-- the page fast on a queue of millions.
SELECT m.leased_by, m.id, m.queue, m.attempts, m.dequeued_at, m.visible_at
FROM :"schema".queues q
CROSS JOIN LATERAL (
    SELECT id, queue, attempts, dequeued_at, visible_at, lease, leased_by
    FROM :"schema".messages
    WHERE queue = q.name
    ORDER BY priority DESC, id
    LIMIT $1
) m
WHERE m.lease IS NOT NULL AND m.visible_at > now() AND m.leased_by IS NOT NULL
ORDER BY m.leased_by, m.id
