-- queue_set_paused: pause ($2 true) or resume queue $1. A paused queue keeps
-- accepting messages but delivers none. No row when there is no such queue.
CREATE OR REPLACE FUNCTION :"schema".queue_set_paused(text, boolean)
RETURNS TABLE (
    name text,
    paused boolean
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE queues q SET paused = coalesce($2, q.paused) WHERE q.name = $1
    RETURNING q.name, q.paused;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_set_paused(text, boolean) FROM PUBLIC;
