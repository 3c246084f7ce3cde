-- message_fail: settle failed attempts of leased messages, fenced by lease.
-- One decision for both clients' workers: retry with a backoff, or dead.
--   $1 ids bigint[], $2 leases uuid[]
--   $3 errors      text[]     JSON texts or NULL: recorded as last_error (retry)
--                             or as the archive row's error (dead)
--   $4 delays      float8[]   seconds before the retry; NULL: the backoff below
--   $5 force_dead  boolean[]  NULL or true: archive as dead whatever the attempts
--                             (the handler gave up, e.g. Python's Abort)
--   $6 backoff_base, $7 backoff_max (seconds), $8 backoff_jitter (0 to 1)
-- For each message whose lease is still the given one: when force_dead, or it
-- has been delivered the queue's max_attempts times (attempts counts the
-- delivery being settled), it moves to the archive as 'dead'; otherwise it is
-- released for another attempt after its delay:
--   base * 2^(attempts - 1), capped at max, spread by +-jitter (a fraction,
--   random() per message, so jobs failing together do not return together),
--   and capped at max again.
-- The attempt count stays (it was counted at dequeue).
-- A message whose cancellation was requested (message_cancel) is archived as
-- 'cancelled' instead (outcome 'cancelled'): it is not retried.
-- One result row per input, in input order: outcome 'retried', 'dead', 'cancelled',
-- 'lease_lost' (the row is there under another lease, or none) or
-- 'not_found' (no such waiting or in-flight message); for 'retried' the delay
-- used, in seconds; for 'retried' and 'dead' the attempts made.
CREATE OR REPLACE FUNCTION :"schema".message_fail(
    bigint[], uuid[], text[], float8[], boolean[], float8, float8, float8
)
RETURNS TABLE (
    id bigint,
    outcome text,
    delay float8,
    attempts integer
)
LANGUAGE plpgsql
SECURITY DEFINER
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF EXISTS (SELECT 1 FROM unnest($4::float8[]) d WHERE NOT (d >= 0 AND d <= 3155760000))
       OR $6 IS NULL OR NOT ($6 >= 0 AND $6 <= 3155760000)
       OR $7 IS NULL OR NOT ($7 >= 0 AND $7 <= 3155760000)
       OR $8 IS NULL OR NOT ($8 >= 0 AND $8 <= 1) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('delays, backoff_base and backoff_max must be from 0 to 3155760000 seconds and '
                  'backoff_jitter from 0 to 1, got delays %s, base %s, max %s, jitter %s',
                  $4, $6, $7, $8);
    END IF;
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::float8[], $5::boolean[])
                      WITH ORDINALITY AS t(id, lease, error, delay, force_dead, ord)
    ),
    decided AS MATERIALIZED (
        -- The rows still held under the given lease, locked, with the decision.
        SELECT m.id, m.attempts, i.error,
               coalesce(i.force_dead, false) OR m.attempts >= q.max_attempts
                   OR m.cancel_requested_at IS NOT NULL AS dead,
               m.cancel_requested_at IS NOT NULL AS cancelled,
               coalesce(i.delay,
                        greatest(0::float8, least($7::float8,
                            least($7::float8,
                                  $6::float8 * power(2::float8, least(greatest(m.attempts, 1) - 1, 62)))
                            * (1 + $8::float8 * (2 * random() - 1))))) AS wait
        FROM input i
        JOIN messages m ON m.id = i.id AND m.lease = i.lease
        JOIN queues q ON q.name = m.queue
        FOR UPDATE OF m
    ),
    dead AS (
        DELETE FROM messages m
        USING decided d
        WHERE m.id = d.id AND d.dead
        RETURNING m.*, d.error AS fail_error, d.cancelled
    ),
    archived AS (
        INSERT INTO archive
            (id, queue, payload, priority, attempts, enqueued_at, dequeued_at, dedup_key, headers,
             status, error, progress, group_key)
        SELECT x.id, x.queue, x.payload, x.priority, x.attempts, x.enqueued_at, x.dequeued_at,
               x.dedup_key, x.headers, CASE WHEN x.cancelled THEN 'cancelled' ELSE 'dead' END,
               coalesce(x.fail_error::jsonb, x.last_error), x.progress, x.group_key
        FROM dead x
        RETURNING id
    ),
    retried AS (
        UPDATE messages m
        SET lease = NULL,
            leased_by = NULL,
            visible_at = now() + make_interval(secs => d.wait),
            last_error = coalesce(d.error::jsonb, m.last_error)
        FROM decided d
        WHERE m.id = d.id AND NOT d.dead
        RETURNING m.id
    )
    SELECT i.id,
           CASE WHEN d.id IS NOT NULL THEN
                    CASE WHEN d.cancelled THEN 'cancelled' WHEN d.dead THEN 'dead' ELSE 'retried' END
                WHEN EXISTS (SELECT 1 FROM messages m WHERE m.id = i.id) THEN 'lease_lost'
                ELSE 'not_found' END AS outcome,
           CASE WHEN NOT d.dead THEN d.wait END AS delay,
           d.attempts
    FROM input i LEFT JOIN decided d ON d.id = i.id
    ORDER BY i.ord;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_fail(bigint[], uuid[], text[], float8[], boolean[], float8, float8, float8) FROM PUBLIC;
