-- pgqrs schema, version 2: the hot statements as functions.
--
-- Every message operation a producer, consumer or worker runs many times a
-- second is a PL/pgSQL function here, named like its query file in
-- sql/queries (which is now just the call). Why: a plain statement is parsed,
-- analysed and planned on every call, because pgqrs sends unnamed statements
-- (named prepared statements break behind pgBouncer in transaction mode).
-- For these statements that was 60-70% of the server's work per call
-- (message_dequeue: ~250 us of planning for ~70 us of execution). A function's
-- statements are prepared once per server connection and their plans cached
-- there, which every pooler leaves alone.
--
-- `plan_cache_mode = force_generic_plan`: PostgreSQL would otherwise keep
-- re-planning (a custom plan for LIMIT 1 always looks cheaper than the
-- generic one), which is the cost this migration removes. The statements are
-- written so that the generic plan is the index-driven one whatever the
-- statistics say: rows are looked up by `id = ANY (ARRAY(...))` or by the
-- primary key from the input arrays, never joined in a way that could turn
-- into a scan of the whole table.
--
-- The bodies are the statements of version 1's query files, unchanged except
-- for those lookups. A later change to one of them is a new migration
-- (CREATE OR REPLACE FUNCTION), so the database always runs the statements
-- its recorded schema version says.
--
-- `SET search_path`: the bodies name pgqrs's tables without a schema (psql,
-- which can also run this file, does not substitute :"schema" inside a
-- function body); pg_temp comes last so no temporary table can stand in for
-- them. The NOTIFY channel is therefore current_schema() || '.enqueue'.
--
-- `#variable_conflict use_column`: inside the bodies a name such as `id`
-- means the table's column, not the function's result column.

-- message_dequeue: lease up to $2 ready messages of queue $1, in delivery
-- order (priority DESC, id). One statement:
--   * rows are picked with FOR UPDATE SKIP LOCKED in a MATERIALIZED CTE, so
--     concurrent consumers never block on, or share, a row and LIMIT holds;
--   * each picked row gets a fresh lease token (fencing out any previous
--     holder), attempts + 1, and visible_at = now() + visibility timeout
--     ($3 seconds, or the queue's default when NULL);
--   * a picked row already delivered max_attempts times moves to the archive
--     as 'dead' instead of being delivered again.
--   $4 worker id that takes the lease (NULL for a plain consumer).
-- Result rows: outcome 'leased' (the delivered messages), 'dead' (ids moved to
-- the archive), or a single 'missing' row when the queue does not exist.
CREATE FUNCTION :"schema".message_dequeue(text, bigint, float8, bigint)
RETURNS TABLE (
    outcome text,
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
    last_error jsonb
)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH q AS MATERIALIZED (
        SELECT name, visibility_timeout, max_attempts, paused
        FROM queues
        WHERE name = $1
    ),
    candidates AS MATERIALIZED (
        SELECT m.id, m.attempts >= (SELECT max_attempts FROM q) AS exhausted
        FROM messages m
        WHERE m.queue = $1
          AND m.visible_at <= now()
          AND NOT (SELECT paused FROM q)
        ORDER BY m.priority DESC, m.id
        LIMIT $2
        FOR UPDATE OF m SKIP LOCKED
    ),
    dead AS (
        DELETE FROM messages m
        WHERE m.id = ANY (ARRAY(SELECT c.id FROM candidates c WHERE c.exhausted))
        RETURNING m.*
    ),
    dead_archived AS (
        INSERT INTO archive
            (id, queue, payload, priority, attempts, enqueued_at, dequeued_at, dedup_key, headers, status, error)
        SELECT d.id, d.queue, d.payload, d.priority, d.attempts, d.enqueued_at, d.dequeued_at, d.dedup_key,
               d.headers, 'dead',
               jsonb_build_object('reason', 'max_attempts exceeded',
                                  'max_attempts', (SELECT max_attempts FROM q),
                                  'last_error', d.last_error)
        FROM dead d
        RETURNING id
    ),
    leased AS (
        UPDATE messages m
        SET lease = gen_random_uuid(),
            leased_by = $4,
            attempts = m.attempts + 1,
            dequeued_at = now(),
            visible_at = now() + coalesce(make_interval(secs => $3::float8), (SELECT visibility_timeout FROM q))
        WHERE m.id = ANY (ARRAY(SELECT c.id FROM candidates c WHERE NOT c.exhausted))
        RETURNING m.*
    )
    SELECT 'leased' AS outcome, l.id, l.queue, l.payload, l.priority, l.attempts, l.enqueued_at,
           l.dequeued_at, l.visible_at AS visible_until, l.headers, l.lease, l.dedup_key, l.last_error
    FROM leased l
    UNION ALL
    SELECT 'dead', d.id, d.queue, NULL, d.priority, d.attempts, d.enqueued_at,
           d.dequeued_at, NULL, NULL, NULL, NULL, NULL
    FROM dead d
    UNION ALL
    SELECT 'missing', NULL, $1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    WHERE NOT EXISTS (SELECT 1 FROM q)
    ORDER BY priority DESC, id;
END
$function$;

-- message_insert: enqueue messages that have no dedup key (the common case) in
-- one statement, and send one NOTIFY (a wake-up hint for idle workers;
-- delivered on commit), as message_enqueue does.
--   $1 queue text
--   $2 payloads     jsonb        a JSON array of the payloads (one text for the
--                                whole batch: no per-element array quoting)
--   $3 priority     integer      the same for every message of the call
--   $4 delay        float8       seconds; NULL for none
--   $5 available_at timestamptz  NULL for none (delay adds to it)
--   $6 headers      text         JSON text; NULL for {}
-- Without dedup keys nothing can conflict, so this skips message_enqueue's
-- ON CONFLICT arbiter and its matching of results to inputs, and returns only
-- what the client does not know already. Ids are drawn as the ordered rows
-- are inserted, so id order is input order (the client sorts by id).
-- The NOTIFY is an uncorrelated subquery of RETURNING: evaluated once, for
-- the first row (a CTE and a final sort cost ~10% more server time).
CREATE FUNCTION :"schema".message_insert(text, text, integer, float8, timestamptz, text)
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
    INSERT INTO messages (queue, payload, priority, visible_at, headers)
    SELECT $1, p.payload, $3::integer,
           greatest(now(), coalesce($5::timestamptz, now())
                           + make_interval(secs => coalesce($4::float8, 0))),
           coalesce($6::text::jsonb, '{}'::jsonb)
    FROM jsonb_array_elements($2::text::jsonb) WITH ORDINALITY AS p(payload, ord)
    ORDER BY p.ord
    RETURNING id, enqueued_at, visible_at AS visible_until,
              (SELECT pg_notify(current_schema() || '.enqueue', $1)) IS NULL AS notified;
END
$function$;

-- message_enqueue: insert one or many messages in one statement, and send one
-- NOTIFY (a wake-up hint for idle workers; delivered on commit).
--   $1 queue text
--   $2 payloads     text[]         JSON texts
--   $3 priorities   integer[]
--   $4 delays       float8[]       seconds; NULL for none
--   $5 available_at timestamptz[]  NULL for none (delay adds to it)
--   $6 dedup_keys   text[]         NULL for none; unique within one call
--   $7 headers      text[]         JSON texts; NULL for {}
-- A dedup key that matches a waiting or in-flight message returns that
-- message (inserted = false) instead of adding a new one. Rows come back in
-- input order.
CREATE FUNCTION :"schema".message_enqueue(text, text[], integer[], float8[], timestamptz[], text[], text[])
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
    WITH input AS (
        SELECT *
        FROM unnest($2::text[], $3::integer[], $4::float8[], $5::timestamptz[], $6::text[], $7::text[])
             WITH ORDINALITY AS t(payload, priority, delay, available_at, dedup_key, headers, ord)
    ),
    written AS (
        INSERT INTO messages AS m (queue, payload, priority, visible_at, dedup_key, headers)
        SELECT $1, i.payload::jsonb, i.priority,
               greatest(now(), coalesce(i.available_at, now()) + make_interval(secs => coalesce(i.delay, 0))),
               i.dedup_key, coalesce(i.headers::jsonb, '{}'::jsonb)
        FROM input i
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

-- message_archive: move leased messages to the archive, fenced by lease.
--   $1 ids bigint[], $2 leases uuid[], $3 statuses text[],
--   $4 results text[] (JSON texts or NULL), $5 errors text[] (JSON texts or NULL)
-- Only a row whose current lease equals the given one moves; one result row
-- per input: outcome 'ok', 'lease_lost' (the row is there under another
-- lease, or none) or 'not_found' (no such waiting or in-flight message).
CREATE FUNCTION :"schema".message_archive(bigint[], uuid[], text[], text[], text[])
RETURNS TABLE (
    id bigint,
    outcome text,
    visible_until timestamptz
)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[])
                      AS t(id, lease, status, result, error)
    ),
    moved AS (
        DELETE FROM messages m
        USING input i
        WHERE m.id = i.id AND m.lease = i.lease
        RETURNING m.*
    ),
    archived AS (
        INSERT INTO archive
            (id, queue, payload, priority, attempts, enqueued_at, dequeued_at, dedup_key, headers,
             status, result, error)
        SELECT mv.id, mv.queue, mv.payload, mv.priority, mv.attempts, mv.enqueued_at, mv.dequeued_at,
               mv.dedup_key, mv.headers, i.status, i.result::jsonb,
               coalesce(i.error::jsonb, mv.last_error)
        FROM moved mv JOIN input i ON i.id = mv.id
        RETURNING id
    )
    SELECT i.id,
           CASE WHEN a.id IS NOT NULL THEN 'ok'
                WHEN EXISTS (SELECT 1 FROM messages m WHERE m.id = i.id) THEN 'lease_lost'
                ELSE 'not_found' END AS outcome,
           NULL::timestamptz AS visible_until
    FROM input i LEFT JOIN archived a ON a.id = i.id;
END
$function$;

-- message_delete: delete leased messages outright, fenced by lease.
--   $1 ids bigint[], $2 leases uuid[]
-- One result row per input, as message_archive.
CREATE FUNCTION :"schema".message_delete(bigint[], uuid[])
RETURNS TABLE (
    id bigint,
    outcome text,
    visible_until timestamptz
)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest($1::bigint[], $2::uuid[]) AS t(id, lease)
    ),
    deleted AS (
        DELETE FROM messages m
        USING input i
        WHERE m.id = i.id AND m.lease = i.lease
        RETURNING m.id
    )
    SELECT i.id,
           CASE WHEN d.id IS NOT NULL THEN 'ok'
                WHEN EXISTS (SELECT 1 FROM messages m WHERE m.id = i.id) THEN 'lease_lost'
                ELSE 'not_found' END AS outcome,
           NULL::timestamptz AS visible_until
    FROM input i LEFT JOIN deleted d ON d.id = i.id;
END
$function$;

-- message_extend: keep leases: visible_at = now() + $3 seconds, fenced by lease.
--   $1 ids bigint[], $2 leases uuid[], $3 seconds float8
-- A lease that expired but was not taken over is renewed. One result row per
-- input, as message_archive, with the new visible_until.
CREATE FUNCTION :"schema".message_extend(bigint[], uuid[], float8)
RETURNS TABLE (
    id bigint,
    outcome text,
    visible_until timestamptz
)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest($1::bigint[], $2::uuid[]) AS t(id, lease)
    ),
    extended AS (
        UPDATE messages m
        SET visible_at = now() + make_interval(secs => $3::float8)
        FROM input i
        WHERE m.id = i.id AND m.lease = i.lease
        RETURNING m.id, m.visible_at
    )
    SELECT i.id,
           CASE WHEN e.id IS NOT NULL THEN 'ok'
                WHEN EXISTS (SELECT 1 FROM messages m WHERE m.id = i.id) THEN 'lease_lost'
                ELSE 'not_found' END AS outcome,
           e.visible_at AS visible_until
    FROM input i LEFT JOIN extended e ON e.id = i.id;
END
$function$;

-- message_release: give leased messages back to the queue, fenced by lease.
--   $1 ids bigint[], $2 leases uuid[], $3 delays float8[] (seconds),
--   $4 errors text[] (JSON texts or NULL: recorded as last_error)
--   $5 refunds boolean[] (NULL for none): true gives back the attempt counted
--      at dequeue, for a message no handler started (e.g. a worker shutting down)
-- The message becomes visible again after its delay; its attempt count stays
-- (it was counted at dequeue) unless refunded. One result row per input, as
-- message_archive.
CREATE FUNCTION :"schema".message_release(bigint[], uuid[], float8[], text[], boolean[])
RETURNS TABLE (
    id bigint,
    outcome text,
    visible_until timestamptz
)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::float8[], $4::text[], $5::boolean[])
                      AS t(id, lease, delay, error, refund)
    ),
    released AS (
        UPDATE messages m
        SET lease = NULL,
            leased_by = NULL,
            attempts = CASE WHEN i.refund THEN greatest(m.attempts - 1, 0) ELSE m.attempts END,
            visible_at = now() + make_interval(secs => coalesce(i.delay, 0)),
            last_error = coalesce(i.error::jsonb, m.last_error)
        FROM input i
        WHERE m.id = i.id AND m.lease = i.lease
        RETURNING m.id, m.visible_at
    )
    SELECT i.id,
           CASE WHEN r.id IS NOT NULL THEN 'ok'
                WHEN EXISTS (SELECT 1 FROM messages m WHERE m.id = i.id) THEN 'lease_lost'
                ELSE 'not_found' END AS outcome,
           r.visible_at AS visible_until
    FROM input i LEFT JOIN released r ON r.id = i.id;
END
$function$;
