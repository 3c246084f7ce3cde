-- dashboard_archive_search: archived messages, newest first, for queue $1 (NULL:
-- all), status $2 (NULL: all), archived in [$3, $4) (NULLs: unbounded), after
-- the keyset ($5 archived_at, $6 id; NULLs for the first page); $7 rows.
-- The (queue, status) pairs come from a loose index scan of
-- archive_queue_status_idx; each pair is one index range read newest first and
-- stops after $7 rows, so no filter makes it read the whole archive.
CREATE OR REPLACE FUNCTION :"schema".dashboard_archive_search(text, text, timestamptz, timestamptz, timestamptz, bigint, bigint)
RETURNS TABLE (
    id bigint,
    queue text,
    status text,
    attempts integer,
    priority integer,
    enqueued_at timestamptz,
    archived_at timestamptz,
    preview text,
    error_preview text
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $7 IS NULL OR $7 < 1 OR $7 > 10001 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('limit must be from 1 to 10001, got %s', coalesce($7::text, 'NULL'));
    END IF;
    IF ($5 IS NULL) <> ($6 IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = 'the keyset needs both archived_at and id, or neither';
    END IF;
    RETURN QUERY
    WITH RECURSIVE pairs(queue, status) AS (
        (SELECT queue, status FROM archive
         WHERE ($1::text IS NULL OR queue = $1::text)
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
             WHERE a.queue > p.queue AND $1::text IS NULL
             ORDER BY a.queue, a.status LIMIT 1)
            LIMIT 1
        ) n
    )
    SELECT x.id, x.queue, x.status, x.attempts, x.priority, x.enqueued_at, x.archived_at,
           left(x.payload::text, 160),
           left(coalesce(x.error ->> 'message', x.error ->> 'reason', x.error::text), 160)
    FROM pairs p
    CROSS JOIN LATERAL (
        SELECT a.* FROM archive a
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
    LIMIT $7;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_archive_search(text, text, timestamptz, timestamptz, timestamptz, bigint, bigint) FROM PUBLIC;
