-- archive_redrive: put archived messages back on their queue, ready now, with
-- their attempts reset. $1 queue, $2 status (usually 'dead'), $3 ids bigint[]
-- (NULL for every match). A message whose dedup key is taken by a waiting
-- message stays archived. Returns the ids put back.
WITH q AS MATERIALIZED (
    -- The queue's row, locked as an enqueue locks it: a concurrent
    -- queue_delete waits, so no message is put back into a deleted queue.
    SELECT name FROM :"schema".queues WHERE name = $1 FOR KEY SHARE
),
moved AS (
    DELETE FROM :"schema".archive a
    WHERE a.queue = $1
      AND a.status = $2
      AND ($3::bigint[] IS NULL OR a.id = ANY ($3::bigint[]))
      AND EXISTS (SELECT 1 FROM q)
      AND NOT EXISTS (SELECT 1 FROM :"schema".messages m
                      WHERE m.queue = a.queue AND m.dedup_key = a.dedup_key)
    RETURNING a.*
)
INSERT INTO :"schema".messages
    (id, queue, payload, priority, visible_at, attempts, enqueued_at, dedup_key, headers, last_error)
OVERRIDING SYSTEM VALUE
SELECT id, queue, payload, priority, now(), 0, enqueued_at, dedup_key, headers, error
FROM moved
RETURNING id
