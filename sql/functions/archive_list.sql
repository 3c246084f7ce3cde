-- archive_list: archived messages of queue $1 (NULL for all) with status $2
-- (NULL for all), newest first, at most $3.
CREATE OR REPLACE FUNCTION :"schema".archive_list(text, text, bigint)
RETURNS TABLE (
    id bigint,
    queue text,
    payload jsonb,
    priority integer,
    attempts integer,
    enqueued_at timestamptz,
    dequeued_at timestamptz,
    dedup_key text,
    headers jsonb,
    archived_at timestamptz,
    status text,
    result jsonb,
    error jsonb,
    progress jsonb
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $3 IS NULL OR $3 < 1 OR $3 > 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('limit must be from 1 to 10000, got %s', coalesce($3::text, 'NULL'));
    END IF;
    RETURN QUERY
    SELECT a.id, a.queue, a.payload, a.priority, a.attempts, a.enqueued_at, a.dequeued_at,
           a.dedup_key, a.headers, a.archived_at, a.status, a.result, a.error, a.progress
    FROM archive a
    WHERE ($1 IS NULL OR a.queue = $1)
      AND ($2 IS NULL OR a.status = $2)
    ORDER BY a.archived_at DESC, a.id DESC
    LIMIT $3;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".archive_list(text, text, bigint) FROM PUBLIC;
