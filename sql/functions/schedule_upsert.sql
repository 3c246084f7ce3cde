-- schedule_upsert: create schedule $1, or (with $10 replace) make an existing
-- one say what the arguments say: the worker's idempotent declaration at
-- start. Without replace, an existing name gives no row (ScheduleExists).
--   $1 name text, $2 queue text, $3 payload text (JSON), $4 headers text (a
--   JSON object; NULL for {}), $5 priority integer, $6 cron text (5 fields or
--   @hourly/@daily/@weekly/@monthly/@yearly) or $7 interval_seconds bigint
--   (exactly one of them), $8 time_zone text (IANA), $9 missed text ('skip' or
--   'latest'), $10 replace boolean.
-- The clients parse the cron expression with their cron library; this checks
-- its shape (five fields of numbers, names, ranges, steps and lists), so a
-- client that skipped its checks cannot store something neither parses.
-- A replace that changes the timing (cron, interval, time zone) sets
-- next_slot to NULL: the next tick plans from then on. Pause state is the
-- operators': a declaration leaves it as it is. A declaration that changes
-- nothing writes nothing.
CREATE OR REPLACE FUNCTION :"schema".schedule_upsert(text, text, text, text, integer, text, bigint, text, text, boolean)
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
    created_at timestamptz,
    created boolean
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
DECLARE
    v_payload jsonb;
    v_headers jsonb;
    item constant text := '(\*|[0-9]+|[A-Za-z]{3})(-([0-9]+|[A-Za-z]{3}))?(/[0-9]+)?';
BEGIN
    IF $1 IS NULL OR $1 !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule name must be 1-128 characters of A-Z a-z 0-9 _ . : -, got %s',
            coalesce(quote_literal($1), 'NULL'));
    END IF;
    IF $2 IS NULL OR $2 !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule %s: queue must be a valid queue name, got %s', $1, coalesce(quote_literal($2), 'NULL'));
    END IF;
    IF ($6 IS NULL) = ($7 IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule %s: give exactly one of cron and interval', $1);
    END IF;
    IF $6 IS NOT NULL
       AND $6 !~ '^@(hourly|daily|weekly|monthly|yearly)$'
       AND $6 !~ ('^\s*' || item || '(,' || item || ')*'
                  || repeat('\s+' || item || '(,' || item || ')*', 4) || '\s*$') THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule %s: cron must be 5 fields (minute hour day-of-month month day-of-week) '
            'or @hourly/@daily/@weekly/@monthly/@yearly, got %s', $1, quote_literal($6));
    END IF;
    IF $7 IS NOT NULL AND $7 <= 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule %s: interval must be > 0 seconds, got %s', $1, $7);
    END IF;
    IF $8 IS NULL OR NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = $8) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule %s: unknown time zone %s (an IANA name such as UTC or Europe/Berlin)',
            $1, coalesce(quote_literal($8), 'NULL'));
    END IF;
    IF $9 IS NULL OR $9 NOT IN ('skip', 'latest') THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule %s: missed must be ''skip'' or ''latest'', got %s', $1, coalesce(quote_literal($9), 'NULL'));
    END IF;
    IF $5 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('schedule %s: priority must be an integer', $1);
    END IF;
    BEGIN
        v_payload := $3::jsonb;
        v_headers := coalesce($4, '{}')::jsonb;
    EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule %s: payload and headers must be JSON texts (%s)', $1, SQLERRM);
    END;
    IF v_payload IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('schedule %s: payload must be JSON, got NULL', $1);
    END IF;
    IF jsonb_typeof(v_headers) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format(
            'schedule %s: headers must be a JSON object, got %s', $1, v_headers);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = $2) THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = format(
            'schedule %s: queue %s does not exist', $1, quote_literal($2));
    END IF;

    IF $10 THEN
        RETURN QUERY
        INSERT INTO schedules AS s (name, queue, payload, headers, priority, cron, interval_seconds, time_zone, missed)
        VALUES ($1, $2, v_payload, v_headers, $5, $6, $7, $8, $9)
        ON CONFLICT (name) DO UPDATE
        SET queue = EXCLUDED.queue, payload = EXCLUDED.payload, headers = EXCLUDED.headers,
            priority = EXCLUDED.priority, cron = EXCLUDED.cron,
            interval_seconds = EXCLUDED.interval_seconds, time_zone = EXCLUDED.time_zone,
            missed = EXCLUDED.missed, updated_at = now(),
            next_slot = CASE
                WHEN (s.cron, s.interval_seconds, s.time_zone)
                     IS NOT DISTINCT FROM (EXCLUDED.cron, EXCLUDED.interval_seconds, EXCLUDED.time_zone)
                THEN s.next_slot END
        WHERE (s.queue, s.payload, s.headers, s.priority, s.cron, s.interval_seconds, s.time_zone, s.missed)
              IS DISTINCT FROM (EXCLUDED.queue, EXCLUDED.payload, EXCLUDED.headers, EXCLUDED.priority,
                                EXCLUDED.cron, EXCLUDED.interval_seconds, EXCLUDED.time_zone, EXCLUDED.missed)
        RETURNING s.name, s.queue, s.payload, s.headers, s.priority, s.cron, s.interval_seconds,
                  s.time_zone, s.missed, s.paused, s.next_slot, s.last_slot, s.last_fired_at,
                  s.created_at, (s.xmax = 0) AS created;
        IF NOT FOUND THEN  -- unchanged: the row as it is
            RETURN QUERY
            SELECT s.name, s.queue, s.payload, s.headers, s.priority, s.cron, s.interval_seconds,
                   s.time_zone, s.missed, s.paused, s.next_slot, s.last_slot, s.last_fired_at,
                   s.created_at, false
            FROM schedules s WHERE s.name = $1;
        END IF;
    ELSE
        RETURN QUERY
        INSERT INTO schedules AS s (name, queue, payload, headers, priority, cron, interval_seconds, time_zone, missed)
        VALUES ($1, $2, v_payload, v_headers, $5, $6, $7, $8, $9)
        ON CONFLICT (name) DO NOTHING
        RETURNING s.name, s.queue, s.payload, s.headers, s.priority, s.cron, s.interval_seconds,
                  s.time_zone, s.missed, s.paused, s.next_slot, s.last_slot, s.last_fired_at,
                  s.created_at, true;
    END IF;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".schedule_upsert(text, text, text, text, integer, text, bigint, text, text, boolean) FROM PUBLIC;
