-- worker_list: every known worker, newest first, with the number of messages
-- it holds leased right now.
CREATE OR REPLACE FUNCTION :"schema".worker_list()
RETURNS TABLE (
    id bigint,
    hostname text,
    pid integer,
    queues text[],
    started_at timestamptz,
    heartbeat_at timestamptz,
    stopped_at timestamptz,
    status text,
    leased bigint
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT w.id, w.hostname, w.pid, w.queues, w.started_at, w.heartbeat_at, w.stopped_at, w.status,
           (SELECT count(*) FROM messages m
            WHERE m.leased_by = w.id AND m.lease IS NOT NULL AND m.visible_at > now())
    FROM workers w
    ORDER BY w.id DESC;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".worker_list() FROM PUBLIC;
