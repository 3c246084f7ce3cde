-- dashboard_series_archived: $1 queue, $2 window in seconds, $3 rows read at
-- most per status. Messages of the queue archived per minute over the window,
-- by status (completed, dead...): for each status (a loose index scan of
-- archive_queue_status_idx finds them), the newest $3 rows of the window, an
-- index-only range. A status that read $3 rows is cut to the newest ones: a
-- 'cut:' row says so. Minutes are Unix times (seconds).
CREATE OR REPLACE FUNCTION :"schema".dashboard_series_archived(text, double precision, bigint)
RETURNS TABLE (series text, minute bigint, n bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = 'queue must not be NULL';
    END IF;
    IF $2 IS NULL OR NOT ($2 > 0 AND $2 <= 31622400) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('window must be from 0 to 31622400 seconds (366 days), got %s',
                             coalesce($2::text, 'NULL'));
    END IF;
    IF $3 IS NULL OR $3 < 1 OR $3 > 10000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('rows per status must be from 1 to 10000000, got %s', coalesce($3::text, 'NULL'));
    END IF;
    RETURN QUERY
    WITH RECURSIVE
    cutoff AS (SELECT now() - make_interval(secs => $2) AS t),
    statuses(status) AS (
        (SELECT a.status FROM archive a WHERE a.queue = $1 ORDER BY a.status LIMIT 1)
        UNION ALL
        SELECT (SELECT a.status FROM archive a
                WHERE a.queue = $1 AND a.status > s.status ORDER BY a.status LIMIT 1)
        FROM statuses s
        WHERE s.status IS NOT NULL
    ),
    archived AS (
        SELECT s.status, x.archived_at
        FROM statuses s
        CROSS JOIN LATERAL (
            SELECT a.archived_at FROM archive a
            WHERE a.queue = $1 AND a.status = s.status AND a.archived_at >= (SELECT t FROM cutoff)
            ORDER BY a.archived_at DESC
            LIMIT $3
        ) x
        WHERE s.status IS NOT NULL
    )
    SELECT d.status, extract(epoch FROM date_trunc('minute', d.archived_at))::bigint, count(*)
    FROM archived d
    GROUP BY 1, 2
    UNION ALL
    SELECT 'cut:' || d.status, NULL, count(*) FROM archived d GROUP BY d.status HAVING count(*) >= $3;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_series_archived(text, double precision, bigint) FROM PUBLIC;
