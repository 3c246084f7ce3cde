-- archive_counts: $1 count cap, $2 rate window in seconds, $3 queue (NULL for
-- all). Every (queue, status) pair of the archive, found by a loose index scan
-- of archive_queue_status_idx (a few probes per pair, not a read per row),
-- with its count up to $1 rows and the rows archived in the last $2 seconds
-- (up to $1): index ranges only. A count equal to $1 means "at least"; the
-- caller then asks the planner for an estimate.
WITH RECURSIVE pairs(queue, status) AS (
    (SELECT queue, status FROM :"schema".archive
     WHERE ($3::text IS NULL OR queue = $3::text)
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
         WHERE a.queue > p.queue AND $3::text IS NULL
         ORDER BY a.queue, a.status LIMIT 1)
        LIMIT 1
    ) n
)
SELECT p.queue, p.status,
       (SELECT count(*) FROM (SELECT 1 FROM :"schema".archive a
                              WHERE a.queue = p.queue AND a.status = p.status
                              LIMIT $1) c) AS total,
       (SELECT count(*) FROM (SELECT 1 FROM :"schema".archive a
                              WHERE a.queue = p.queue AND a.status = p.status
                                AND a.archived_at >= now() - make_interval(secs => $2::float8)
                              LIMIT $1) r) AS recent
FROM pairs p
ORDER BY p.queue, p.status
