-- message: message $1, waiting (or in flight) or archived, by primary key.
-- where_ is 'messages' or 'archive'; worker_* describe the lease holder.
SELECT 'messages' AS where_, m.id, m.queue, m.payload, m.priority, m.attempts, m.enqueued_at,
       m.dequeued_at, m.visible_at, m.lease, m.leased_by, m.dedup_key, m.headers,
       m.last_error AS error, NULL::jsonb AS result, NULL::text AS status,
       NULL::timestamptz AS archived_at,
       CASE WHEN m.visible_at <= now() THEN 'ready'
            WHEN m.lease IS NOT NULL THEN 'in_flight'
            ELSE 'delayed' END AS state,
       w.hostname AS worker_hostname, w.pid AS worker_pid, w.status AS worker_status,
       q.max_attempts
FROM :"schema".messages m
LEFT JOIN :"schema".workers w ON w.id = m.leased_by
LEFT JOIN :"schema".queues q ON q.name = m.queue
WHERE m.id = $1
UNION ALL
SELECT 'archive', a.id, a.queue, a.payload, a.priority, a.attempts, a.enqueued_at,
       a.dequeued_at, NULL, NULL, NULL, a.dedup_key, a.headers, a.error, a.result, a.status,
       a.archived_at, a.status, NULL, NULL, NULL, q.max_attempts
FROM :"schema".archive a
LEFT JOIN :"schema".queues q ON q.name = a.queue
WHERE a.id = $1
