-- dashboard_workers: the $1 most recent workers (running and stopping first),
-- with the seconds since their heartbeat.
CREATE OR REPLACE FUNCTION :"schema".dashboard_workers(bigint)
RETURNS TABLE (
    id bigint,
    hostname text,
    pid integer,
    queues text[],
    started_at timestamptz,
    heartbeat_at timestamptz,
    stopped_at timestamptz,
    status text,
    heartbeat_age double precision
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR $1 < 1 OR $1 > 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('limit must be from 1 to 10000, got %s', coalesce($1::text, 'NULL'));
    END IF;
    RETURN QUERY
    SELECT w.id, w.hostname, w.pid, w.queues, w.started_at, w.heartbeat_at, w.stopped_at, w.status,
           extract(epoch FROM now() - w.heartbeat_at)::float8
    FROM workers w
    ORDER BY (w.status IN ('running', 'stopping')) DESC, w.id DESC
    LIMIT $1;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_workers(bigint) FROM PUBLIC;
