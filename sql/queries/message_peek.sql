-- message_peek: $1 queue, $2 limit. Read messages in delivery order without
-- leasing them (for operators and debugging); state is ready, in_flight or
-- delayed.
SELECT id, queue, payload, priority, attempts, enqueued_at, dequeued_at,
       visible_at AS visible_until, headers, NULL::uuid AS lease, dedup_key, last_error,
       CASE WHEN visible_at <= now() THEN 'ready'
            WHEN lease IS NOT NULL THEN 'in_flight'
            ELSE 'delayed' END AS state
FROM :"schema".messages
WHERE queue = $1
ORDER BY priority DESC, id
LIMIT $2
