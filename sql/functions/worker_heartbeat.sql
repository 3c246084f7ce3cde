-- worker_heartbeat: worker $1 is alive, with status $2 ('running' or
-- 'stopping'). Returns the row's status (no row when it was pruned); a
-- worker that was marked dead (it missed its heartbeats) comes back to life.
CREATE OR REPLACE FUNCTION :"schema".worker_heartbeat(bigint, text)
RETURNS TABLE (status text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $2 IS NULL OR $2 NOT IN ('running', 'stopping') THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('worker status must be running or stopping, got %s', coalesce($2, 'NULL'));
    END IF;
    RETURN QUERY
    UPDATE workers w SET heartbeat_at = now(), status = $2
    WHERE w.id = $1
    RETURNING w.status;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".worker_heartbeat(bigint, text) FROM PUBLIC;
