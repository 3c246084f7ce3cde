-- message_enqueue: insert one or many messages in one statement. The queue is
-- checked once for the statement (queue_lock: no row when the queue does not
-- exist), which also sends the NOTIFY when a worker listens.
--   $1 queue text
--   $2 payloads     text[]         JSON texts
--   $3 priorities   integer[]
--   $4 delays       float8[]       seconds; NULL for none
--   $5 available_at timestamptz[]  NULL for none (delay adds to it)
--   $6 dedup_keys   text[]         NULL for none; unique within one call
--   $7 headers      text[]         JSON texts; NULL for {}
--   $8 groups       text[]         the messages' groups (flow control); NULL for none
-- A dedup key that matches a waiting or in-flight message returns that
-- message (inserted = false) instead of adding a new one. Rows come back in
-- input order.
CREATE OR REPLACE FUNCTION :"schema".message_enqueue(text, text[], integer[], float8[], timestamptz[], text[], text[], text[])
RETURNS TABLE (
    id bigint,
    queue text,
    payload jsonb,
    priority integer,
    attempts integer,
    enqueued_at timestamptz,
    dequeued_at timestamptz,
    visible_until timestamptz,
    headers jsonb,
    lease uuid,
    dedup_key text,
    last_error jsonb,
    inserted boolean
)
LANGUAGE plpgsql
SECURITY DEFINER
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF EXISTS (SELECT 1 FROM unnest($8::text[]) g WHERE length(g) < 1 OR length(g) > 128) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('group must be a string of 1 to 128 characters, got %L',
            (SELECT left(g, 200) FROM unnest($8::text[]) g WHERE length(g) < 1 OR length(g) > 128 LIMIT 1));
    END IF;
    RETURN QUERY
    WITH q AS MATERIALIZED (
        SELECT queue_lock($1) AS name
    ),
    input AS (
        SELECT *
        FROM unnest($2::text[], $3::integer[], $4::float8[], $5::timestamptz[], $6::text[], $7::text[], $8::text[])
             WITH ORDINALITY AS t(payload, priority, delay, available_at, dedup_key, headers, group_key, ord)
    ),
    written AS (
        INSERT INTO messages AS m (queue, payload, priority, visible_at, dedup_key, headers, group_key)
        -- json_check: the payload rules (sql/functions/json_check.sql).
        SELECT q.name, json_check(i.payload::jsonb, 'payload'), i.priority,
               greatest(now(), coalesce(i.available_at, now()) + make_interval(secs => coalesce(i.delay, 0))),
               i.dedup_key,
               CASE WHEN i.headers IS NULL THEN '{}'::jsonb ELSE json_check(i.headers::jsonb, 'headers') END,
               i.group_key
        FROM q, input i
        WHERE q.name IS NOT NULL
        ORDER BY i.ord
        ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL
        DO UPDATE SET dedup_key = EXCLUDED.dedup_key
        RETURNING m.id, m.queue, m.payload, m.priority, m.attempts, m.enqueued_at, m.dequeued_at,
                  m.visible_at, m.headers, m.lease, m.dedup_key, m.last_error, (m.xmax = 0) AS inserted
    ),
    numbered AS (
        -- Each written row gets the key of the input it answers: its dedup key,
        -- or, without one, its rank in id order (ids follow insertion order).
        SELECT w.*,
               coalesce('d:' || w.dedup_key,
                        'n:' || row_number() OVER (PARTITION BY w.dedup_key IS NULL ORDER BY w.id)) AS match_key
        FROM written w
    )
    SELECT n.id, n.queue, n.payload, n.priority, n.attempts, n.enqueued_at, n.dequeued_at,
           n.visible_at AS visible_until, n.headers, n.lease, n.dedup_key, n.last_error, n.inserted
    FROM (
        SELECT i.ord,
               coalesce('d:' || i.dedup_key,
                        'n:' || row_number() OVER (PARTITION BY i.dedup_key IS NULL ORDER BY i.ord)) AS match_key
        FROM input i
    ) i
    JOIN numbered n ON n.match_key = i.match_key
    ORDER BY i.ord;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_enqueue(text, text[], integer[], float8[], timestamptz[], text[], text[], text[]) FROM PUBLIC;
