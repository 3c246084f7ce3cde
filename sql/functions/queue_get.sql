-- queue_get: queue $1's settings, or no row when there is no such queue.
CREATE OR REPLACE FUNCTION :"schema".queue_get(text)
RETURNS TABLE (
    name text,
    visibility_timeout float8,
    max_attempts integer,
    paused boolean,
    created_at timestamptz
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT q.name, extract(epoch FROM q.visibility_timeout)::float8, q.max_attempts, q.paused,
           q.created_at
    FROM queues q
    WHERE q.name = $1;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_get(text) FROM PUBLIC;
