-- queue_list: every queue's settings, by name.
CREATE OR REPLACE FUNCTION :"schema".queue_list()
RETURNS TABLE (
    name text,
    visibility_timeout float8,
    max_attempts integer,
    paused boolean,
    created_at timestamptz,
    concurrency_limit integer,
    group_concurrency integer,
    rate_count integer,
    rate_period float8,
    rate_per_group boolean
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
           q.created_at, q.concurrency_limit, q.group_concurrency, q.rate_count, q.rate_period,
           q.rate_per_group
    FROM queues q
    ORDER BY q.name;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_list() FROM PUBLIC;
