-- schedule_list: every schedule, by name (read-only: no payload changes).
CREATE OR REPLACE FUNCTION :"schema".schedule_list()
RETURNS TABLE (
    name text,
    queue text,
    payload jsonb,
    headers jsonb,
    priority integer,
    cron text,
    interval_seconds bigint,
    time_zone text,
    missed text,
    paused boolean,
    next_slot timestamptz,
    last_slot timestamptz,
    last_fired_at timestamptz,
    created_at timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT s.name, s.queue, s.payload, s.headers, s.priority, s.cron, s.interval_seconds,
           s.time_zone, s.missed, s.paused, s.next_slot, s.last_slot, s.last_fired_at, s.created_at
    FROM schedules s
    ORDER BY s.name;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".schedule_list() FROM PUBLIC;
