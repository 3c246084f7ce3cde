-- message_dequeue: lease up to $2 ready messages of queue $1, in delivery
-- order (priority DESC, id). One statement:
--   * rows are picked with FOR UPDATE SKIP LOCKED in a MATERIALIZED CTE, so
--     concurrent consumers never block on, or share, a row and LIMIT holds;
--   * each picked row gets a fresh lease token (fencing out any previous
--     holder), attempts + 1, and visible_at = now() + visibility timeout
--     ($3 seconds, or the queue's default when NULL);
--   * a picked row already delivered max_attempts times moves to the archive
--     as 'dead' instead of being delivered again.
--   $4 worker id that takes the lease (NULL for a plain consumer).
-- Result rows: outcome 'leased' (the delivered messages), 'dead' (ids moved to
-- the archive), or a single 'missing' row when the queue does not exist.
WITH q AS MATERIALIZED (
    SELECT name, visibility_timeout, max_attempts, paused
    FROM :"schema".queues
    WHERE name = $1
),
candidates AS MATERIALIZED (
    SELECT m.id, m.attempts >= (SELECT max_attempts FROM q) AS exhausted
    FROM :"schema".messages m
    WHERE m.queue = $1
      AND m.visible_at <= now()
      AND NOT (SELECT paused FROM q)
    ORDER BY m.priority DESC, m.id
    LIMIT $2
    FOR UPDATE OF m SKIP LOCKED
),
dead AS (
    DELETE FROM :"schema".messages m
    USING candidates c
    WHERE m.id = c.id AND c.exhausted
    RETURNING m.*
),
dead_archived AS (
    INSERT INTO :"schema".archive
        (id, queue, payload, priority, attempts, enqueued_at, dequeued_at, dedup_key, headers, status, error)
    SELECT d.id, d.queue, d.payload, d.priority, d.attempts, d.enqueued_at, d.dequeued_at, d.dedup_key,
           d.headers, 'dead',
           jsonb_build_object('reason', 'max_attempts exceeded',
                              'max_attempts', (SELECT max_attempts FROM q),
                              'last_error', d.last_error)
    FROM dead d
    RETURNING id
),
leased AS (
    UPDATE :"schema".messages m
    SET lease = gen_random_uuid(),
        leased_by = $4,
        attempts = m.attempts + 1,
        dequeued_at = now(),
        visible_at = now() + coalesce(make_interval(secs => $3::float8), (SELECT visibility_timeout FROM q))
    FROM candidates c
    WHERE m.id = c.id AND NOT c.exhausted
    RETURNING m.*
)
SELECT 'leased' AS outcome, l.id, l.queue, l.payload, l.priority, l.attempts, l.enqueued_at,
       l.dequeued_at, l.visible_at AS visible_until, l.headers, l.lease, l.dedup_key, l.last_error
FROM leased l
UNION ALL
SELECT 'dead', d.id, d.queue, NULL, d.priority, d.attempts, d.enqueued_at,
       d.dequeued_at, NULL, NULL, NULL, NULL, NULL
FROM dead d
UNION ALL
SELECT 'missing', NULL, $1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE NOT EXISTS (SELECT 1 FROM q)
ORDER BY priority DESC, id
