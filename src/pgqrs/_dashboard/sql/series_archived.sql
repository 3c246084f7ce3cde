-- series_archived: $1 queue, $2 window in seconds, $3 rows read at most per
-- status. Messages of the queue archived per minute over the window, by
-- status (completed, dead...): for each status (a loose index scan of
-- archive_queue_status_idx finds them), the newest $3 rows of the window, an
-- index-only range. A status that read $3 rows is cut to the newest ones: a
-- 'cut:' row says so. Minutes are Unix times (seconds).
WITH RECURSIVE
cutoff AS (SELECT now() - make_interval(secs => $2::float8) AS t),
statuses(status) AS (
    (SELECT status FROM :"schema".archive WHERE queue = $1 ORDER BY status LIMIT 1)
    UNION ALL
    SELECT (SELECT a.status FROM :"schema".archive a
            WHERE a.queue = $1 AND a.status > s.status ORDER BY a.status LIMIT 1)
    FROM statuses s
    WHERE s.status IS NOT NULL
),
archived AS (
    SELECT s.status, x.archived_at
    FROM statuses s
    CROSS JOIN LATERAL (
        SELECT a.archived_at FROM :"schema".archive a
        WHERE a.queue = $1 AND a.status = s.status AND a.archived_at >= (SELECT t FROM cutoff)
        ORDER BY a.archived_at DESC
        LIMIT $3
    ) x
    WHERE s.status IS NOT NULL
)
SELECT status AS series, extract(epoch FROM date_trunc('minute', archived_at))::bigint AS minute,
       count(*) AS n
FROM archived
GROUP BY 1, 2
UNION ALL
SELECT 'cut:' || status, NULL, count(*) FROM archived GROUP BY status HAVING count(*) >= $3
