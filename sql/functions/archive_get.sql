-- archive_get: the archived rows of messages $1 (the ids found; a waiter's
-- poll, behind pgBouncer in transaction mode too). By primary key.
CREATE OR REPLACE FUNCTION :"schema".archive_get(bigint[])
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
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR cardinality($1) > 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('ids must be an array of at most 10000 message ids, got %s',
                             coalesce(left($1::text, 100), 'NULL'));
    END IF;
    RETURN QUERY
    SELECT a.id, a.queue, a.payload, a.priority, a.attempts, a.enqueued_at, a.dequeued_at,
           a.dedup_key, a.headers, a.archived_at, a.status, a.result, a.error, a.progress
    FROM archive a
    WHERE a.id = ANY (ARRAY(SELECT DISTINCT x FROM unnest($1) x));
END
$function$;

REVOKE ALL ON FUNCTION :"schema".archive_get(bigint[]) FROM PUBLIC;
