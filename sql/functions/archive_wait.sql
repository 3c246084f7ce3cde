-- archive_wait: register (or, with $2 NULL, unregister) interest in messages
-- $1 being archived, for $2 seconds: the archive trigger (archive_notify)
-- then NOTIFYs the schema's archive channel when one is. Also drops expired
-- registrations (waiters that died). Returns the archived rows of $1 already
-- there, so the waiter that registered after the message was archived does
-- not miss it (register, then look: no gap).
CREATE OR REPLACE FUNCTION :"schema".archive_wait(bigint[], float8)
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
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR cardinality($1) > 10000 OR array_position($1, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('ids must be an array of at most 10000 non-NULL message ids, got %s',
                             coalesce(left($1::text, 100), 'NULL'));
    END IF;
    IF $2 IS NOT NULL AND NOT ($2 > 0 AND $2 <= 3155760000) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('seconds must be from 0 (excluded) to 3155760000, got %s', $2);
    END IF;
    DELETE FROM archive_waiters w WHERE w.expires_at < now() OR ($2 IS NULL AND w.id = ANY ($1));
    IF $2 IS NOT NULL THEN
        INSERT INTO archive_waiters (id, expires_at)
        SELECT DISTINCT i, now() + make_interval(secs => $2) FROM unnest($1) i;
    END IF;
    RETURN QUERY
    SELECT a.id, a.queue, a.payload, a.priority, a.attempts, a.enqueued_at, a.dequeued_at,
           a.dedup_key, a.headers, a.archived_at, a.status, a.result, a.error, a.progress
    FROM archive a
    WHERE a.id = ANY ($1);
END
$function$;

REVOKE ALL ON FUNCTION :"schema".archive_wait(bigint[], float8) FROM PUBLIC;
