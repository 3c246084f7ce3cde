-- archive_search: archived messages, newest first, for queue $1 (NULL: all),
-- status $2 (NULL: all), archived in [$3, $4) (NULLs: unbounded), after the
-- keyset ($5 archived_at, $6 id; NULLs for the first page); $7 rows.
-- The (queue, status) pairs come from a loose index scan of
-- archive_queue_status_idx; each pair is one index range read newest first
-- and stops after $7 rows, so no filter makes it read the whole archive.
WITH RECURSIVE pairs(queue, status) AS (
    (SELECT queue, status FROM :"schema".archive
     WHERE ($1::text IS NULL OR queue = $1::text)
     ORDER BY queue, status LIMIT 1)
    UNION ALL
    SELECT n.queue, n.status
    FROM pairs p
    CROSS JOIN LATERAL (
        (SELECT a.queue, a.status FROM :"schema".archive a
         WHERE a.queue = p.queue AND a.status > p.status
         ORDER BY a.status LIMIT 1)
        UNION ALL
        (SELECT a.queue, a.status FROM :"schema".archive a
         WHERE a.queue > p.queue AND $1::text IS NULL
         ORDER BY a.queue, a.status LIMIT 1)
        LIMIT 1
    ) n
)
SELECT x.id, x.queue, x.status, x.attempts, x.priority, x.enqueued_at, x.archived_at,
       left(x.payload::text, 160) AS preview,
       left(coalesce(x.error ->> 'message', x.error ->> 'reason', x.error::text), 160) AS error_preview
FROM pairs p
CROSS JOIN LATERAL (
    SELECT a.* FROM :"schema".archive a
    WHERE a.queue = p.queue AND a.status = p.status
      AND ($3::timestamptz IS NULL OR a.archived_at >= $3::timestamptz)
      AND ($4::timestamptz IS NULL OR a.archived_at < $4::timestamptz)
      AND ($5::timestamptz IS NULL OR a.archived_at <= $5::timestamptz)
      AND ($5::timestamptz IS NULL OR (a.archived_at, a.id) < ($5::timestamptz, $6::bigint))
    ORDER BY a.archived_at DESC, a.id DESC
    LIMIT $7
) x
WHERE $2::text IS NULL OR p.status = $2::text
ORDER BY x.archived_at DESC, x.id DESC
LIMIT $7
