-- queue_purge: delete every waiting, delayed and in-flight message of queue
-- $1. One row when the queue exists, with the count; none otherwise.
CREATE OR REPLACE FUNCTION :"schema".queue_purge(text)
RETURNS TABLE (
    name text,
    purged bigint
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH q AS (
        SELECT q.name FROM queues q WHERE q.name = $1
    ),
    gone AS (
        DELETE FROM messages m WHERE m.queue = (SELECT q.name FROM q) RETURNING 1
    )
    SELECT q.name, (SELECT count(*) FROM gone) FROM q;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_purge(text) FROM PUBLIC;
