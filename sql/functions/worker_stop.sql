-- worker_stop: worker $1 shut down cleanly. Returns its id (no row when it was
-- pruned).
CREATE OR REPLACE FUNCTION :"schema".worker_stop(bigint)
RETURNS TABLE (id bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE workers w
    SET status = 'stopped', stopped_at = now(), heartbeat_at = now()
    WHERE w.id = $1
    RETURNING w.id;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".worker_stop(bigint) FROM PUBLIC;
