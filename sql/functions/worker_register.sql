-- worker_register: a new worker row from hostname $1, pid $2, queues $3 and
-- whether it LISTENs for enqueues $4 (enqueue statements NOTIFY only when a
-- listening worker serves their queue). Returns the id and start time.
CREATE OR REPLACE FUNCTION :"schema".worker_register(text, integer, text[], boolean)
RETURNS TABLE (
    id bigint,
    started_at timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    INSERT INTO workers AS w (hostname, pid, queues, listening)
    VALUES ($1, $2, $3, $4)
    RETURNING w.id, w.started_at;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".worker_register(text, integer, text[], boolean) FROM PUBLIC;
