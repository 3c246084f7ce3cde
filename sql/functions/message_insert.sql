-- message_insert: enqueue messages that have no dedup key (the common case) in
-- one statement. The queue is checked once for the statement (queue_lock:
-- no row is inserted when the queue does not exist, and the client reports
-- QueueNotFound), which also sends the NOTIFY when a worker listens.
--   $1 queue text
--   $2 payloads     jsonb        a JSON array of the payloads (one text for the
--                                whole batch: no per-element array quoting)
--   $3 priority     integer      the same for every message of the call
--   $4 delay        float8       seconds; NULL for none
--   $5 available_at timestamptz  NULL for none (delay adds to it)
--   $6 headers      text         JSON text; NULL for {}
--   $7 group        text         the messages' group (flow control); NULL for none
-- Without dedup keys nothing can conflict, so this skips message_enqueue's
-- ON CONFLICT arbiter and its matching of results to inputs, and returns only
-- what the client does not know already. Ids are drawn as the ordered rows
-- are inserted, so id order is input order (the client sorts by id).
-- `notified` is always NULL, kept so the result shape stays the clients'.
CREATE OR REPLACE FUNCTION :"schema".message_insert(text, text, integer, float8, timestamptz, text, text)
RETURNS TABLE (
    id bigint,
    enqueued_at timestamptz,
    visible_until timestamptz,
    notified boolean
)
LANGUAGE plpgsql
SECURITY DEFINER
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $7 IS NOT NULL AND (length($7) < 1 OR length($7) > 128) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('group must be a string of 1 to 128 characters, got %L', left($7, 200));
    END IF;
    -- What every row shares is computed once, in q: in the INSERT's select
    -- list a generic plan evaluates it per row (json_check on the headers is
    -- a plpgsql call, even for NULL headers).
    RETURN QUERY
    WITH q AS MATERIALIZED (
        SELECT queue_lock($1) AS name,
               greatest(now(), coalesce($5::timestamptz, now())
                               + make_interval(secs => coalesce($4::float8, 0))) AS visible_at,
               coalesce(json_check($6::text::jsonb, 'headers'), '{}'::jsonb) AS headers
    )
    INSERT INTO messages (queue, payload, priority, visible_at, headers, group_key)
    SELECT q.name, p.payload, $3::integer, q.visible_at, q.headers, $7::text
    -- json_check: the payload rules, for the whole batch in one call.
    FROM q, jsonb_array_elements(json_check($2::text::jsonb, 'payload', true)) WITH ORDINALITY AS p(payload, ord)
    WHERE q.name IS NOT NULL
    ORDER BY p.ord
    RETURNING id, enqueued_at, visible_at AS visible_until,
              NULL::boolean AS notified;  -- kept for the signature: queue_lock notifies
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_insert(text, text, integer, float8, timestamptz, text, text) FROM PUBLIC;
