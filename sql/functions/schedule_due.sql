-- schedule_due: the one statement of a worker's schedule tick. The schedules
-- to fire or plan now (not paused, next_slot NULL or at most now(), database
-- time), each with the database's now(); then one row with name NULL whose
-- next_slot is the earliest upcoming slot of the others (NULL: none), so the
-- worker can sleep until then (at most its tick). With nothing due this is
-- the only statement a tick runs, whatever the number of schedules.
CREATE OR REPLACE FUNCTION :"schema".schedule_due()
RETURNS TABLE (
    name text,
    cron text,
    interval_seconds bigint,
    time_zone text,
    missed text,
    next_slot timestamptz,
    last_slot timestamptz,
    now timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT s.name, s.cron, s.interval_seconds, s.time_zone, s.missed, s.next_slot, s.last_slot,
           now()
    FROM schedules s
    WHERE NOT s.paused AND (s.next_slot IS NULL OR s.next_slot <= now())
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, min(s.next_slot), NULL, now()
    FROM schedules s
    WHERE NOT s.paused AND s.next_slot > now();
END
$function$;

REVOKE ALL ON FUNCTION :"schema".schedule_due() FROM PUBLIC;
