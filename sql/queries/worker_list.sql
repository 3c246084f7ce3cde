-- worker_list: every known worker, newest first, with the number of messages
-- it holds leased right now.
SELECT w.id, w.hostname, w.pid, w.queues, w.started_at, w.heartbeat_at, w.stopped_at, w.status,
       (SELECT count(*) FROM :"schema".messages m
        WHERE m.leased_by = w.id AND m.lease IS NOT NULL AND m.visible_at > now()) AS leased
FROM :"schema".workers w
ORDER BY w.id DESC
