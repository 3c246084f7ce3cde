-- pgqrs schema, version 4: NOTIFY only when a worker listens.
--
-- Versions 2 and 3 sent one NOTIFY per enqueue statement. PostgreSQL
-- serializes the commits of notifying transactions (a database-wide lock from
-- pre-commit to the end of the commit, WAL flush included), so concurrent
-- producers lost group commit: measured with 4 producers enqueueing one job
-- per transaction, the NOTIFY alone halved their throughput. It buys nothing
-- when no worker listens: workers behind pgBouncer in transaction mode poll
-- (poll_only), and a backlog may build up while no worker runs.
--
-- Workers now say at registration whether they LISTEN (workers.listening);
-- the queue check every enqueue statement already runs (queue_lock) sends
-- the NOTIFY only when a running worker that listens serves the queue.
-- Registration commits before the worker's LISTEN is set up and the worker
-- polls once LISTEN is set up, so an enqueue that saw no listener is still
-- found by that poll, unless its transaction began before the registration
-- and committed after the poll: that message waits for the next poll
-- interval, as any missed NOTIFY does (NOTIFY is a hint; the poll is the
-- guarantee). The column defaults to true, so workers of older clients,
-- which do not say, keep being notified.

ALTER TABLE :"schema".workers ADD COLUMN listening boolean NOT NULL DEFAULT true;

-- queue_lock: the queue's name, with its row locked FOR KEY SHARE (see
-- version 3), or NULL when there is no such queue; and, when a running
-- worker that listens serves the queue, a NOTIFY on the schema's enqueue
-- channel with the queue's name (delivered at commit, dropped on rollback).
-- Only enqueue statements call it. SECURITY DEFINER as before (producers
-- cannot read the workers table either).
CREATE OR REPLACE FUNCTION :"schema".queue_lock(text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
DECLARE
    locked text;
BEGIN
    SELECT q.name INTO locked FROM queues q WHERE q.name = $1 FOR KEY SHARE;
    IF locked IS NOT NULL AND EXISTS (
        SELECT 1 FROM workers w
        WHERE w.status = 'running' AND w.listening AND $1 = ANY (w.queues)
    ) THEN
        PERFORM pg_notify(current_schema() || '.enqueue', $1);
    END IF;
    RETURN locked;
END
$function$;

-- The running, listening workers, which every enqueue statement looks for:
-- stopped and dead rows (kept until pruned) stay out of that search.
CREATE INDEX workers_listening_idx ON :"schema".workers (id)
    WHERE status = 'running' AND listening;

-- message_insert and message_enqueue: as in version 3, without their own
-- NOTIFY (queue_lock sends it when someone listens).
CREATE OR REPLACE FUNCTION :"schema".message_insert(text, text, integer, float8, timestamptz, text)
RETURNS TABLE (
    id bigint,
    enqueued_at timestamptz,
    visible_until timestamptz,
    notified boolean
)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH q AS MATERIALIZED (
        SELECT queue_lock($1) AS name
    )
    INSERT INTO messages (queue, payload, priority, visible_at, headers)
    SELECT q.name, p.payload, $3::integer,
           greatest(now(), coalesce($5::timestamptz, now())
                           + make_interval(secs => coalesce($4::float8, 0))),
           coalesce($6::text::jsonb, '{}'::jsonb)
    FROM q, jsonb_array_elements($2::text::jsonb) WITH ORDINALITY AS p(payload, ord)
    WHERE q.name IS NOT NULL
    ORDER BY p.ord
    RETURNING id, enqueued_at, visible_at AS visible_until,
              NULL::boolean AS notified;  -- kept for the signature: queue_lock notifies
END
$function$;

CREATE OR REPLACE FUNCTION :"schema".message_enqueue(text, text[], integer[], float8[], timestamptz[], text[], text[])
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
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH q AS MATERIALIZED (
        SELECT queue_lock($1) AS name
    ),
    input AS (
        SELECT *
        FROM unnest($2::text[], $3::integer[], $4::float8[], $5::timestamptz[], $6::text[], $7::text[])
             WITH ORDINALITY AS t(payload, priority, delay, available_at, dedup_key, headers, ord)
    ),
    written AS (
        INSERT INTO messages AS m (queue, payload, priority, visible_at, dedup_key, headers)
        SELECT q.name, i.payload::jsonb, i.priority,
               greatest(now(), coalesce(i.available_at, now()) + make_interval(secs => coalesce(i.delay, 0))),
               i.dedup_key, coalesce(i.headers::jsonb, '{}'::jsonb)
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
