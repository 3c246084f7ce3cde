-- message_dequeue_limited: message_dequeue's path for a queue with flow-control
-- limits (docs/flow-control.md). Internal: only message_dequeue calls it, with
-- the queue row $1 it read, the batch $2 (checked), the lease length $3 and
-- the worker id $4. Same result rows as message_dequeue, plus at most one
-- 'throttled' row whose retry_after (seconds) says when the rate limit gives
-- its next token, when the rate limit (not the concurrency) kept the batch
-- short.
--
-- Exactness: every dequeue of the queue takes one transaction-scoped advisory
-- lock keyed by the schema and queue, so the held-count it reads cannot be
-- raced by another dequeue (READ COMMITTED: a count read in a statement does
-- not see a concurrent transaction's leases). The lock is released at commit,
-- after the commit is visible, so the next holder sees every lease taken
-- before it. Cost: the dequeues of one limited queue run one after the other
-- (each is short: ~0.2-1 ms); queues without limits never take it.
--
-- Held leases are the rows of flow_leases whose message still carries that
-- lease and whose lease has not expired; the others are pruned first. So an
-- expired lease (its holder died) frees its place at the next dequeue, and
-- archive/release/delete need not know about this table.
--
-- Groups (group_concurrency, or a per-group rate): each round takes, for every
-- group with work, the head of the group in delivery order (the rows of the
-- group not held, up to the group's free places), then hands them out
-- round-robin: every group's first row before any group's second, so no
-- group starves the others. A row that is not yet ready (delayed, or backing
-- off after a failure) blocks the rows behind it in its group: the group is
-- delivered in order. Messages without a group in such a queue are looked for
-- among the first 100 rows in delivery order and are limited by the
-- queue-wide limits only.
--
-- Rate limits: a token bucket per queue (group_key '') or per group, of
-- capacity rate_count, refilled at rate_count / rate_period tokens per
-- second, read from the clock under the lock and written only when tokens
-- are taken.
CREATE OR REPLACE FUNCTION :"schema".message_dequeue_limited(:"schema".queues, bigint, interval, bigint)
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
    q queues := $1;
    wanted bigint := $2;
    lease_for interval := $3;
    grouped boolean := $1.group_concurrency IS NOT NULL OR $1.rate_per_group;
    -- Without a concurrency limit nothing counts leases: a rate-only queue
    -- skips flow_leases altogether.
    counting boolean := $1.concurrency_limit IS NOT NULL OR $1.group_concurrency IS NOT NULL;
    rate float8;            -- tokens per second
    cap float8;             -- bucket capacity
    queue_tokens float8;    -- the queue-wide bucket, NULL without one
    allow bigint;
    held bigint;
    wait float8;            -- seconds until a token would let more out
    clock timestamptz;      -- the buckets' time: read once the lock is held
    chosen bigint[];
    picked bigint;
    round_leased messages[];
    round_dead messages[];
    all_leased messages[];
    all_dead messages[];
BEGIN
    IF $2 IS NULL OR $2 < 1 OR $2 > 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('batch must be from 1 to 10000, got %s', coalesce($2::text, 'NULL'));
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('pgqrs.flow:' || current_schema() || '.' || q.name, 0));
    -- The lock is held until the commit, so a limited queue's dequeues go at
    -- most one per WAL flush. The commit still waits for its flush (no
    -- synchronous_commit = off here): a lease the client was handed must
    -- survive a server crash, or two holders could run one message at once.
    -- The buckets' clock is read under the lock, so it only moves forward from
    -- one dequeue of the queue to the next (now() is the transaction's start,
    -- which may be earlier than that of a dequeue that got the lock first).
    clock := clock_timestamp();
    -- Leases that no longer count: archived, released, deleted or expired.
    IF counting THEN
        DELETE FROM flow_leases f
        WHERE f.queue = q.name
          AND NOT EXISTS (SELECT 1 FROM messages m
                          WHERE m.id = f.id AND m.lease = f.lease AND m.visible_at > now());
    END IF;
    IF q.rate_count IS NOT NULL THEN
        rate := q.rate_count / q.rate_period;
        cap := q.rate_count;
        IF NOT q.rate_per_group THEN
            SELECT least(cap, b.tokens + rate * extract(epoch FROM clock - b.updated_at)::float8)
            INTO queue_tokens
            FROM flow_buckets b WHERE b.queue = q.name AND b.group_key = '';
            queue_tokens := coalesce(queue_tokens, cap);
        END IF;
    END IF;
    LOOP
        allow := wanted;
        IF q.concurrency_limit IS NOT NULL THEN
            SELECT count(*) INTO held FROM flow_leases f WHERE f.queue = q.name;
            allow := least(allow, q.concurrency_limit - held);
        END IF;
        IF queue_tokens IS NOT NULL THEN
            allow := least(allow, floor(queue_tokens)::bigint);
            IF queue_tokens < 1 THEN
                wait := (1 - queue_tokens) / rate;
            END IF;
        END IF;
        EXIT WHEN allow <= 0;
        IF NOT grouped THEN
            SELECT array_agg(c.id ORDER BY c.priority DESC, c.id) INTO chosen
            FROM (SELECT m.id, m.priority FROM messages m
                  WHERE m.queue = q.name AND m.visible_at <= now()
                  ORDER BY m.priority DESC, m.id
                  LIMIT allow) c;
        ELSE
            WITH RECURSIVE grp AS (
                -- Every group with rows, one index probe each (a skip scan).
                (SELECT m.group_key FROM messages m
                 WHERE m.queue = q.name AND m.group_key IS NOT NULL
                 ORDER BY m.group_key LIMIT 1)
                UNION ALL
                SELECT (SELECT m.group_key FROM messages m
                        WHERE m.queue = q.name AND m.group_key > g.group_key
                        ORDER BY m.group_key LIMIT 1)
                FROM grp g WHERE g.group_key IS NOT NULL
            ),
            rooms AS (
                SELECT g.group_key,
                       CASE WHEN q.group_concurrency IS NULL THEN allow
                            ELSE q.group_concurrency
                                 - (SELECT count(*) FROM flow_leases f
                                    WHERE f.queue = q.name AND f.group_key = g.group_key)
                       END AS places,
                       CASE WHEN q.rate_per_group THEN
                           coalesce((SELECT least(cap, b.tokens + rate * extract(epoch FROM clock - b.updated_at)::float8)
                                     FROM flow_buckets b
                                     WHERE b.queue = q.name AND b.group_key = g.group_key), cap)
                       END AS tokens
                FROM grp g
                WHERE g.group_key IS NOT NULL
            ),
            heads AS (
                SELECT r.group_key, r.tokens, h.id, h.priority, h.ready, h.rank
                FROM rooms r
                CROSS JOIN LATERAL (
                    SELECT m.id, m.priority, m.visible_at <= now() AS ready,
                           row_number() OVER (ORDER BY m.priority DESC, m.id) AS rank
                    FROM messages m
                    WHERE m.queue = q.name AND m.group_key = r.group_key
                      AND (m.lease IS NULL OR m.visible_at <= now())
                    ORDER BY m.priority DESC, m.id
                    LIMIT greatest(r.places, 0)
                ) h
            ),
            open AS (
                -- A row not yet ready blocks the rows behind it in its group.
                SELECT h.*, min(h.rank) FILTER (WHERE NOT h.ready) OVER (PARTITION BY h.group_key) AS blocked_at
                FROM heads h
            ),
            eligible AS (
                SELECT o.id, o.priority, o.rank,
                       o.tokens IS NOT NULL AND o.rank > floor(o.tokens) AS no_token,
                       (o.rank - o.tokens) / rate AS token_wait
                FROM open o
                WHERE o.ready AND (o.blocked_at IS NULL OR o.rank < o.blocked_at)
                UNION ALL
                SELECT w.id, w.priority, row_number() OVER (ORDER BY w.priority DESC, w.id), false, NULL
                FROM (SELECT m.id, m.priority, m.group_key, m.visible_at FROM messages m
                      WHERE m.queue = q.name
                      ORDER BY m.priority DESC, m.id
                      LIMIT 100) w
                WHERE w.group_key IS NULL AND w.visible_at <= now()
            ),
            taken AS (
                SELECT e.id, e.priority, e.rank FROM eligible e
                WHERE NOT e.no_token
                ORDER BY e.rank, e.priority DESC, e.id
                LIMIT allow
            )
            SELECT (SELECT array_agg(t.id ORDER BY t.rank, t.priority DESC, t.id) FROM taken t),
                   (SELECT min(e.token_wait) FROM eligible e WHERE e.no_token)
            INTO chosen, wait;
        END IF;
        EXIT WHEN chosen IS NULL;
        WITH candidates AS MATERIALIZED (
            -- Dequeues of this queue are serialised: no SKIP LOCKED, so a row
            -- being archived or released right now is waited for and
            -- re-checked, never passed over (that would break group order).
            -- [issue 16, cancellation] a row whose cancel was requested while
            -- its lease ran out goes to the archive as 'cancelled', with the dead.
            SELECT m.id,
                   m.attempts >= q.max_attempts OR m.cancel_requested_at IS NOT NULL AS exhausted
            FROM messages m
            WHERE m.id = ANY (chosen)
              AND m.visible_at <= now()
            FOR UPDATE OF m
        ),
        dead AS (
            DELETE FROM messages m
            WHERE m.id = ANY (ARRAY(SELECT c.id FROM candidates c WHERE c.exhausted))
            RETURNING m AS msg
        ),
        dead_archived AS (
            INSERT INTO archive
                (id, queue, payload, priority, attempts, enqueued_at, dequeued_at, dedup_key, headers,
                 status, error, progress, group_key)
            SELECT (d.msg).id, (d.msg).queue, (d.msg).payload, (d.msg).priority, (d.msg).attempts,
                   (d.msg).enqueued_at, (d.msg).dequeued_at, (d.msg).dedup_key, (d.msg).headers,
                   CASE WHEN (d.msg).cancel_requested_at IS NULL THEN 'dead' ELSE 'cancelled' END,
                   CASE WHEN (d.msg).cancel_requested_at IS NULL THEN
                       jsonb_build_object('reason', 'max_attempts exceeded',
                                          'max_attempts', q.max_attempts,
                                          'last_error', (d.msg).last_error)
                   ELSE (d.msg).last_error END,
                   (d.msg).progress, (d.msg).group_key
            FROM dead d
            RETURNING id
        ),
        leased AS (
            UPDATE messages m
            SET lease = gen_random_uuid(),
                leased_by = $4,
                attempts = m.attempts + 1,
                -- The buckets' clock: the moment the rate limit counted it.
                dequeued_at = clock,
                visible_at = now() + lease_for
            WHERE m.id = ANY (ARRAY(SELECT c.id FROM candidates c WHERE NOT c.exhausted))
            RETURNING m AS msg
        ),
        counted AS (
            INSERT INTO flow_leases (queue, id, group_key, lease)
            SELECT (l.msg).queue, (l.msg).id, (l.msg).group_key, (l.msg).lease FROM leased l
            WHERE counting
            ON CONFLICT ON CONSTRAINT flow_leases_pkey
            DO UPDATE SET lease = EXCLUDED.lease, group_key = EXCLUDED.group_key
        )
        SELECT (SELECT count(*) FROM candidates),
               (SELECT array_agg(l.msg) FROM leased l),
               (SELECT array_agg(d.msg) FROM dead d)
        INTO picked, round_leased, round_dead;
        IF round_leased IS NOT NULL AND rate IS NOT NULL THEN
            IF queue_tokens IS NOT NULL THEN
                queue_tokens := queue_tokens - cardinality(round_leased);
            ELSE
                -- Per-group buckets: refill each from the clock and take what it gave.
                INSERT INTO flow_buckets AS b (queue, group_key, tokens, updated_at)
                SELECT q.name, l.group_key, cap - count(*), clock
                FROM unnest(round_leased) l
                WHERE l.group_key IS NOT NULL
                GROUP BY l.group_key
                ON CONFLICT (queue, group_key) DO UPDATE
                SET tokens = least(cap, b.tokens + rate * extract(epoch FROM clock - b.updated_at)::float8)
                             - (cap - EXCLUDED.tokens),
                    updated_at = clock;
            END IF;
        END IF;
        all_leased := all_leased || round_leased;
        all_dead := all_dead || round_dead;
        EXIT WHEN round_dead IS NULL OR picked < cardinality(chosen);
        wanted := wanted - coalesce(cardinality(round_leased), 0);
        EXIT WHEN wanted <= 0;
        wait := NULL;
        chosen := NULL;
    END LOOP;
    IF queue_tokens IS NOT NULL AND all_leased IS NOT NULL THEN
        INSERT INTO flow_buckets AS b (queue, group_key, tokens, updated_at)
        VALUES (q.name, '', queue_tokens, clock)
        ON CONFLICT (queue, group_key) DO UPDATE SET tokens = EXCLUDED.tokens, updated_at = EXCLUDED.updated_at;
        IF queue_tokens < 1 THEN
            wait := (1 - queue_tokens) / rate;
        END IF;
    END IF;
    RETURN QUERY
    SELECT u.* FROM (
        SELECT 'leased'::text AS outcome, l.id, l.queue, l.payload, l.priority, l.attempts,
               l.enqueued_at, l.dequeued_at, l.visible_at, l.headers, l.lease, l.dedup_key,
               l.last_error, l.group_key, NULL::float8 AS retry_after
        FROM unnest(all_leased) l
        UNION ALL
        SELECT CASE WHEN d.cancel_requested_at IS NULL THEN 'dead' ELSE 'cancelled' END,
               d.id, d.queue, NULL, d.priority, d.attempts, d.enqueued_at,
               d.dequeued_at, NULL, NULL, NULL, NULL, NULL, d.group_key, NULL
        FROM unnest(all_dead) d
        UNION ALL
        SELECT 'throttled', NULL, q.name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, wait
        WHERE wait IS NOT NULL AND coalesce(cardinality(all_leased), 0) < $2
    ) u
    -- Delivery order (priority DESC, id); the 'throttled' row last.
    ORDER BY u.outcome = 'throttled', u.priority DESC, u.id;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_dequeue_limited(:"schema".queues, bigint, interval, bigint) FROM PUBLIC;
