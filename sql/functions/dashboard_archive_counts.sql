-- dashboard_archive_counts: $1 count cap, $2 rate window in seconds, $3 queue
-- (NULL for all). Every (queue, status) pair of the archive, found by a loose
-- index scan of archive_queue_status_idx (a few probes per pair, not a read per
-- row), with its count up to $1 rows and the rows archived in the last $2
-- seconds (up to $1): index ranges only. A count equal to $1 means "at least";
-- the caller then asks dashboard_estimate_archived.
CREATE OR REPLACE FUNCTION :"schema".dashboard_archive_counts(bigint, double precision, text)
RETURNS TABLE (queue text, status text, total bigint, recent bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR $1 < 1 OR $1 > 10000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('count cap must be from 1 to 10000000, got %s', coalesce($1::text, 'NULL'));
    END IF;
    IF $2 IS NULL OR NOT ($2 > 0 AND $2 <= 31622400) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('window must be from 0 to 31622400 seconds (366 days), got %s',
                             coalesce($2::text, 'NULL'));
    END IF;
    RETURN QUERY
    WITH RECURSIVE pairs(queue, status) AS (
        (SELECT queue, status FROM archive
         WHERE ($3::text IS NULL OR queue = $3::text)
         ORDER BY queue, status LIMIT 1)
        UNION ALL
        SELECT n.queue, n.status
        FROM pairs p
        CROSS JOIN LATERAL (
            (SELECT a.queue, a.status FROM archive a
             WHERE a.queue = p.queue AND a.status > p.status
             ORDER BY a.status LIMIT 1)
            UNION ALL
            (SELECT a.queue, a.status FROM archive a
             WHERE a.queue > p.queue AND $3::text IS NULL
             ORDER BY a.queue, a.status LIMIT 1)
            LIMIT 1
        ) n
    )
    SELECT p.queue, p.status,
           (SELECT count(*) FROM (SELECT 1 FROM archive a
                                  WHERE a.queue = p.queue AND a.status = p.status
                                  LIMIT $1) c),
           (SELECT count(*) FROM (SELECT 1 FROM archive a
                                  WHERE a.queue = p.queue AND a.status = p.status
                                    AND a.archived_at >= now() - make_interval(secs => $2)
                                  LIMIT $1) r)
    FROM pairs p
    ORDER BY p.queue, p.status;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_archive_counts(bigint, double precision, text) FROM PUBLIC;
