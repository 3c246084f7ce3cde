-- worker_alive: a worker's heartbeat.
--   $1 worker id, $2 status ('running' or 'stopping'),
--   $3 hostname, $4 pid, $5 queues text[], $6 listening boolean
-- Records the heartbeat and status; a worker that was marked dead (it missed
-- its heartbeats) comes back to life here. A worker whose row was pruned
-- (silent for longer than the prune age, e.g. cut off from the database) is
-- registered again under the same id (the identity column is GENERATED
-- ALWAYS, hence OVERRIDING SYSTEM VALUE; the id came from its sequence, so no
-- later worker can be given it), which is why the heartbeat carries what a
-- registration needs. One statement, so both workers decide this the same way.
-- Returns the row's status and whether the worker was registered again.
CREATE OR REPLACE FUNCTION :"schema".worker_alive(bigint, text, text, integer, text[], boolean)
RETURNS TABLE (
    status text,
    registered boolean
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $2 IS NULL OR $2 NOT IN ('running', 'stopping') THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('worker status must be running or stopping, got %s', coalesce($2, 'NULL'));
    END IF;
    -- A worker id is one its sequence gave out: an id beyond the sequence
    -- would make a later registration collide with it.
    IF $1 IS NULL OR $1 < 1
       OR $1 > coalesce(pg_sequence_last_value(pg_get_serial_sequence('workers', 'id')::regclass), 0) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('worker id %s was never registered', coalesce($1::text, 'NULL'));
    END IF;
    RETURN QUERY
    INSERT INTO workers AS w (id, hostname, pid, queues, listening, status)
    OVERRIDING SYSTEM VALUE
    VALUES ($1, $3, $4, $5, $6, $2)
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), status = EXCLUDED.status
    RETURNING w.status, (w.xmax = 0) AS registered;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".worker_alive(bigint, text, text, integer, text[], boolean) FROM PUBLIC;
