-- messages: one page of queue $1's messages in delivery order (priority DESC,
-- id), after the keyset ($2 priority, $3 id; both NULL for the first page),
-- reading at most $4 rows of the index (messages_dequeue_idx), keeping those
-- in state $5 (ready, in_flight, delayed; NULL for all), at most $6 of them.
-- The two branches are each one index range, so page 1000 costs what page 1
-- does. The last row, kind 'scanned', gives the key of the last row read, to
-- continue from when a filter kept fewer than $6 of the $4 rows read.
WITH scanned AS MATERIALIZED (
    SELECT u.id, u.priority, u.visible_at, u.lease
    FROM (
        (SELECT id, priority, visible_at, lease FROM :"schema".messages
         WHERE queue = $1 AND $2::integer IS NOT NULL AND priority = $2::integer AND id > $3::bigint
         ORDER BY priority DESC, id
         LIMIT $4)
        UNION ALL
        (SELECT id, priority, visible_at, lease FROM :"schema".messages
         WHERE queue = $1 AND ($2::integer IS NULL OR priority < $2::integer)
         ORDER BY priority DESC, id
         LIMIT $4)
    ) u
    ORDER BY u.priority DESC, u.id
    LIMIT $4
),
classified AS (
    SELECT s.id, s.priority,
           CASE WHEN s.visible_at <= now() THEN 'ready'
                WHEN s.lease IS NOT NULL THEN 'in_flight'
                ELSE 'delayed' END AS state
    FROM scanned s
),
picked AS (
    SELECT c.id, c.state FROM classified c
    WHERE $5::text IS NULL OR c.state = $5::text
    ORDER BY c.priority DESC, c.id
    LIMIT $6
)
SELECT 'row' AS kind, m.id, m.priority, m.attempts, m.visible_at, m.enqueued_at, m.dequeued_at,
       p.state, left(m.payload::text, 160) AS preview, m.leased_by, m.dedup_key,
       m.last_error IS NOT NULL AS has_error, (SELECT count(*) FROM scanned) AS scanned
FROM picked p
JOIN :"schema".messages m ON m.id = p.id
UNION ALL
(SELECT 'scanned', s.id, s.priority, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        (SELECT count(*) FROM scanned)
 FROM scanned s
 ORDER BY s.priority, s.id DESC
 LIMIT 1)
ORDER BY kind, priority DESC, id
