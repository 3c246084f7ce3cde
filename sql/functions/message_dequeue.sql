-- message_dequeue: lease up to $2 ready messages of queue $1, in delivery
-- order (priority DESC, id).
--   $3 lease length in seconds (NULL: the queue's visibility timeout)
--   $4 worker id that takes the lease (NULL for a plain consumer)
-- Each round is two statements:
--   * rows are picked with FOR UPDATE SKIP LOCKED, so concurrent consumers
--     never block on, or share, a row and LIMIT holds; their ids come back
--     as two arrays (to lease; exhausted), and stay locked to the commit;
--   * each picked row gets a fresh lease token (fencing out any previous
--     holder), attempts + 1, and visible_at = now() + the lease length, and
--     is returned straight from the UPDATE (RETURN QUERY);
--   * a picked row already delivered max_attempts times (its last lease ran
--     out) moves to the archive as 'dead' instead of being delivered again
--     (the second statement's DELETE, a no-op when none is).
-- Why two: the one-statement form kept each round's rows as arrays of
-- message rows (to learn how many went dead) and unnested them at the end;
-- copying every payload twice cost ~0.5 ms of a 100-row dequeue (issue 21).
-- [issue 16, cancellation] a picked row whose cancellation was requested
-- (message_cancel marked it while leased; its holder died or released it) is
-- archived as 'cancelled', never delivered again; it counts like a dead row
-- (outcome 'cancelled'). Marked: the `exhausted` flag of the pick and the
-- CASEs in dead/dead_archived and the result.
-- When dead rows took places in the batch and more rows were ready, the
-- function runs another round for the places left, so the batch is full
-- whenever enough ready rows exist: no client loops on "all dead". Each
-- extra round archives at least one row, so the loop ends.
-- Result rows, in delivery order (round by round): outcome 'leased' (the
-- delivered messages), 'dead' (ids moved to the archive), or a single
-- 'missing' row when the queue does not exist. A paused queue returns no row.
-- A queue with flow-control limits (concurrency_limit, group_concurrency,
-- rate limit: docs/flow-control.md) branches right after reading the queue
-- row to message_dequeue_limited, which may add one 'throttled' row whose
-- retry_after (seconds) says when the rate limit gives its next token. The
-- plain path below is for queues without limits: they pay one test.
CREATE OR REPLACE FUNCTION :"schema".message_dequeue(text, bigint, float8, bigint)
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
    last_error jsonb,
    group_key text,
    retry_after float8
)
LANGUAGE plpgsql
SECURITY DEFINER
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
DECLARE
    q queues;
    lease_for interval;
    wanted bigint := $2;
    picked bigint;
    -- A round's picked rows (locked), as ids: to lease, and to archive as
    -- dead or cancelled.
    live_ids bigint[];
    dead_ids bigint[];
BEGIN
    -- SECURITY DEFINER: the arguments are checked here, not only by the clients.
    IF $2 IS NULL OR $2 < 1 OR $2 > 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('batch must be from 1 to 10000, got %s', coalesce($2::text, 'NULL'));
    END IF;
    IF $3 IS NOT NULL AND NOT ($3 > 0 AND $3 <= 3155760000) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('visibility_timeout must be from 0 (excluded) to 3155760000 seconds, got %s', $3);
    END IF;
    SELECT * INTO q FROM queues WHERE name = $1;
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT 'missing'::text, NULL::bigint, $1, NULL::jsonb, NULL::integer, NULL::integer,
               NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::jsonb, NULL::uuid,
               NULL::text, NULL::jsonb, NULL::text, NULL::float8;
        RETURN;
    END IF;
    IF q.paused THEN
        RETURN;
    END IF;
    lease_for := coalesce(make_interval(secs => $3), q.visibility_timeout);
    IF q.concurrency_limit IS NOT NULL OR q.group_concurrency IS NOT NULL OR q.rate_count IS NOT NULL THEN
        RETURN QUERY SELECT * FROM message_dequeue_limited(q, $2, lease_for, $4);
        RETURN;
    END IF;
    LOOP
        SELECT array_agg(c.id) FILTER (WHERE NOT c.exhausted),
               array_agg(c.id) FILTER (WHERE c.exhausted),
               count(*)
        INTO live_ids, dead_ids, picked
        FROM (
            SELECT m.id,
                   m.attempts >= q.max_attempts OR m.cancel_requested_at IS NOT NULL AS exhausted
            FROM messages m
            WHERE m.queue = $1
              AND m.visible_at <= now()
            ORDER BY m.priority DESC, m.id
            LIMIT wanted
            FOR UPDATE OF m SKIP LOCKED
        ) c;
        RETURN QUERY
        WITH dead AS (
            DELETE FROM messages m
            WHERE m.id = ANY (dead_ids)
            RETURNING m.*
        ),
        dead_archived AS (
            INSERT INTO archive
                (id, queue, payload, priority, attempts, enqueued_at, dequeued_at, dedup_key, headers,
                 status, error, progress, group_key)
            SELECT d.id, d.queue, d.payload, d.priority, d.attempts,
                   d.enqueued_at, d.dequeued_at, d.dedup_key, d.headers,
                   CASE WHEN d.cancel_requested_at IS NULL THEN 'dead' ELSE 'cancelled' END,
                   CASE WHEN d.cancel_requested_at IS NULL THEN
                       jsonb_build_object('reason', 'max_attempts exceeded',
                                          'max_attempts', q.max_attempts,
                                          'last_error', d.last_error)
                   ELSE d.last_error END,
                   d.progress, d.group_key
            FROM dead d
            RETURNING id
        ),
        leased AS (
            UPDATE messages m
            SET lease = gen_random_uuid(),
                leased_by = $4,
                attempts = m.attempts + 1,
                dequeued_at = now(),
                visible_at = now() + lease_for
            WHERE m.id = ANY (live_ids)
            RETURNING m.*
        )
        SELECT 'leased'::text, l.id, l.queue, l.payload, l.priority, l.attempts, l.enqueued_at,
               l.dequeued_at, l.visible_at, l.headers, l.lease, l.dedup_key, l.last_error,
               l.group_key, NULL::float8
        FROM leased l
        UNION ALL
        SELECT CASE WHEN d.cancel_requested_at IS NULL THEN 'dead' ELSE 'cancelled' END,
               d.id, d.queue, NULL, d.priority, d.attempts, d.enqueued_at,
               d.dequeued_at, NULL, NULL, NULL, NULL, NULL, d.group_key, NULL
        FROM dead d
        ORDER BY 5 DESC, 2;
        -- Done when no row went dead (the batch is full or nothing else is
        -- ready) or fewer rows were ready than asked for.
        EXIT WHEN dead_ids IS NULL OR picked < wanted;
        wanted := wanted - coalesce(cardinality(live_ids), 0);
        EXIT WHEN wanted <= 0;
    END LOOP;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_dequeue(text, bigint, float8, bigint) FROM PUBLIC;
