-- dashboard_schedules: the first $1 schedules by name, with where each stands
-- (next and last slot, paused) and the seconds until its next slot (negative:
-- overdue; NULL: not planned yet). No payloads: a page lists them.
CREATE OR REPLACE FUNCTION :"schema".dashboard_schedules(bigint)
RETURNS TABLE (
    name text,
    queue text,
    cron text,
    interval_seconds bigint,
    time_zone text,
    missed text,
    paused boolean,
    next_slot timestamptz,
    last_slot timestamptz,
    last_fired_at timestamptz,
    next_in double precision
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
    SELECT s.name, s.queue, s.cron, s.interval_seconds, s.time_zone, s.missed, s.paused,
           s.next_slot, s.last_slot, s.last_fired_at,
           extract(epoch FROM s.next_slot - now())::float8
    FROM schedules s
    ORDER BY s.name
    LIMIT $1;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_schedules(bigint) FROM PUBLIC;
