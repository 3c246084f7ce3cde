-- message_release: give leased messages back to the queue, fenced by lease.
--   $1 ids bigint[], $2 leases uuid[], $3 delays float8[] (seconds),
--   $4 errors text[] (JSON texts or NULL: recorded as last_error)
--   $5 refunds boolean[] (NULL for none): true gives back the attempt counted
--      at dequeue, for a message no handler started (e.g. a worker shutting down)
-- The message becomes visible again after its delay; its attempt count stays
-- (it was counted at dequeue) unless refunded. One result row per input, as
-- message_archive.
CREATE OR REPLACE FUNCTION :"schema".message_release(bigint[], uuid[], float8[], text[], boolean[])
RETURNS TABLE (
    id bigint,
    outcome text,
    visible_until timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF EXISTS (SELECT 1 FROM unnest($3::float8[]) d WHERE NOT (d >= 0 AND d <= 3155760000)) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('delays must be from 0 to 3155760000 seconds, got %s', $3);
    END IF;
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

REVOKE ALL ON FUNCTION :"schema".message_release(bigint[], uuid[], float8[], text[], boolean[]) FROM PUBLIC;
