-- pgqrs schema, version 3: one queue check per statement, not per row.
--
-- Version 1 had a foreign key messages.queue -> queues.name. Its check runs
-- once per inserted row (a lookup and a KEY SHARE lock on the queue's row):
-- measured 0.82 -> 0.47 ms of server time for a 100-message message_insert
-- without it. The two enqueue functions now take that same KEY SHARE lock
-- once per statement (queue_lock, in a MATERIALIZED CTE) and insert nothing
-- when the queue does not exist (the clients report QueueNotFound when an
-- enqueue returns no row).
--
-- Why this is as safe as the foreign key: the lock is the one the foreign key
-- took. Deleting a queue (queue_delete, below) must wait for every enqueue
-- that holds it, and an enqueue that comes after the delete finds no row to
-- lock and inserts nothing. queue_delete then removes the queue's messages in
-- a second statement, whose fresh snapshot sees every enqueue that committed
-- while the delete waited (ON DELETE CASCADE did this before). The other
-- statement that inserts messages, archive_redrive, takes the same lock.

ALTER TABLE :"schema".messages DROP CONSTRAINT messages_queue_fkey;

-- queue_lock: the queue's name, with its row locked FOR KEY SHARE (the lock a
-- foreign key check takes), or NULL when there is no such queue.
-- SECURITY DEFINER because a row lock needs UPDATE privilege on the table,
-- which a producer must not have (it could pause queues); the foreign key's
-- check ran as the table owner for the same reason. Only roles given it by
-- Admin.grant (producer, admin) may call it.
CREATE FUNCTION :"schema".queue_lock(text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
DECLARE
    locked text;
BEGIN
    SELECT q.name INTO locked FROM queues q WHERE q.name = $1 FOR KEY SHARE;
    RETURN locked;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_lock(text) FROM PUBLIC;

-- message_insert and message_enqueue: as in version 2, with the queue locked
-- once (see above).
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
              (SELECT pg_notify(current_schema() || '.enqueue', $1)) IS NULL AS notified;
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
    ),
    notified AS (
        SELECT pg_notify(current_schema() || '.enqueue', $1) AS sent
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
    CROSS JOIN notified
    ORDER BY i.ord;
END
$function$;

-- queue_delete: delete queue $1 and its waiting and in-flight messages (its
-- archive stays for audit). Returns the name, or no row when there is no such
-- queue. Two statements, so that the second one's snapshot sees the messages
-- of every enqueue the first one waited for.
CREATE FUNCTION :"schema".queue_delete(text)
RETURNS TABLE (name text)
LANGUAGE plpgsql
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY DELETE FROM queues q WHERE q.name = $1 RETURNING q.name;
    IF FOUND THEN
        DELETE FROM messages m WHERE m.queue = $1;
    END IF;
END
$function$;
