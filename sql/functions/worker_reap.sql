-- worker_reap: mark workers silent for $1 seconds dead, and prune stopped and
-- dead rows older than $2 seconds. Leases need no reaping: a dead worker's
-- messages come back when their leases expire. Run by every worker now and
-- then, and by Admin.reap_workers.
CREATE OR REPLACE FUNCTION :"schema".worker_reap(float8, float8)
RETURNS TABLE (
    marked_dead bigint,
    pruned bigint
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR NOT ($1 >= 0 AND $1 <= 3155760000)
       OR $2 IS NULL OR NOT ($2 >= 0 AND $2 <= 3155760000) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('dead_after and prune_after must be from 0 to 3155760000 seconds, got %s and %s',
                             coalesce($1::text, 'NULL'), coalesce($2::text, 'NULL'));
    END IF;
    RETURN QUERY
    WITH marked AS (
        UPDATE workers w
        SET status = 'dead', stopped_at = now()
        WHERE w.status IN ('running', 'stopping')
          AND w.heartbeat_at < now() - make_interval(secs => $1)
        RETURNING w.id
    ),
    gone AS (
        DELETE FROM workers w
        WHERE w.status IN ('stopped', 'dead')
          AND coalesce(w.stopped_at, w.heartbeat_at) < now() - make_interval(secs => $2)
        RETURNING w.id
    )
    SELECT (SELECT count(*) FROM marked), (SELECT count(*) FROM gone);
END
$function$;

REVOKE ALL ON FUNCTION :"schema".worker_reap(float8, float8) FROM PUBLIC;
