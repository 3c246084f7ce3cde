-- schedule_fire: enqueue the slots $2 of schedule $1 and plan its next slot
-- $3, provided its next_slot is still $4 (what the caller's tick read; NULL
-- for a schedule not planned yet). One call is one transaction:
--   1. the compare-and-set on the schedule's row (FOR UPDATE: a second worker
--      firing the same slot waits, then finds next_slot changed and does
--      nothing); not paused; slots must be in the past (database time),
--      after the schedule's last fired slot and before $3;
--   2. one statement: a record per slot (INSERT ... ON CONFLICT DO NOTHING
--      on (schedule, slot)) chained with the message insert, so a slot
--      recorded twice is impossible and a message exists exactly when its
--      record does. The queue is locked as message_insert does (queue_lock:
--      KEY SHARE, NOTIFY when a worker listens). Headers: the schedule's, plus
--      "pgqrs-schedule" (its name) and "pgqrs-slot" (the slot, UTC, ISO 8601).
-- $2 may be empty: plan (or skip missed slots) without enqueuing.
-- Rows: (slot, message_id) per message enqueued; none when fenced out or the
-- queue is gone (the plan still advances then: a missing queue's slots are
-- dropped, not retried every tick).
CREATE OR REPLACE FUNCTION :"schema".schedule_fire(text, timestamptz[], timestamptz, timestamptz)
RETURNS TABLE (slot timestamptz, message_id bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
DECLARE
    v record;  -- the schedule row (not %ROWTYPE: the function may be created before its table)
    v_last timestamptz;
BEGIN
    IF $1 IS NULL OR $2 IS NULL OR $3 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = 'schedule_fire needs a schedule name, a slot array and the next slot';
    END IF;
    IF array_position($2, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('schedule %s: a slot is NULL', $1);
    END IF;
    SELECT max(x) INTO v_last FROM unnest($2) x;
    IF v_last > now() THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule %s: slot %s is in the future (now %s)', $1, v_last, now());
    END IF;
    IF v_last >= $3 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule %s: next slot %s must be after the slots fired (%s)', $1, $3, v_last);
    END IF;

    SELECT * INTO v FROM schedules s WHERE s.name = $1 FOR UPDATE;
    IF NOT FOUND OR v.paused OR v.next_slot IS DISTINCT FROM $4 THEN
        RETURN;  -- fenced out: another worker fired it (or it was paused, deleted, changed)
    END IF;
    UPDATE schedules s
    SET next_slot = $3,
        last_slot = coalesce(greatest(s.last_slot, v_last), s.last_slot, v_last),
        last_fired_at = CASE WHEN v_last IS NULL THEN s.last_fired_at ELSE now() END
    WHERE s.name = $1;
    IF v_last IS NULL THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH q AS MATERIALIZED (
        SELECT queue_lock(v.queue) AS name
    ),
    recorded AS (
        INSERT INTO schedule_slots AS r (schedule, slot, message_id)
        SELECT v.name, x.slot, nextval(pg_get_serial_sequence('messages', 'id'))
        FROM q, unnest($2) WITH ORDINALITY AS x(slot, ord)
        WHERE q.name IS NOT NULL
          AND x.slot > coalesce(v.last_slot, '-infinity')  -- never a slot before the last fired
        ORDER BY x.ord
        ON CONFLICT (schedule, slot) DO NOTHING
        RETURNING r.slot, r.message_id
    ),
    written AS (
        INSERT INTO messages (id, queue, payload, priority, headers)
        OVERRIDING SYSTEM VALUE
        SELECT r.message_id, v.queue, v.payload, v.priority,
               v.headers || jsonb_build_object(
                   'pgqrs-schedule', v.name,
                   'pgqrs-slot', to_char(r.slot AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
        FROM recorded r
        ORDER BY r.slot
        RETURNING id
    )
    SELECT r.slot, r.message_id FROM recorded r JOIN written w ON w.id = r.message_id
    ORDER BY r.slot;

    DELETE FROM schedule_slots p WHERE p.schedule = v.name AND p.slot < v_last - interval '1 day';
END
$function$;

REVOKE ALL ON FUNCTION :"schema".schedule_fire(text, timestamptz[], timestamptz, timestamptz) FROM PUBLIC;
