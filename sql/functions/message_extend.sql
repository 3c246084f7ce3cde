-- message_extend: keep leases: visible_at = now() + $3 seconds, fenced by lease.
--   $1 ids bigint[], $2 leases uuid[], $3 seconds float8
-- A lease that expired but was not taken over is renewed. One result row per
-- input, as message_archive, with the new visible_until; outcome 'cancelled'
-- (the lease is extended too) when a cancellation was requested: the holder
-- stops the handler and archives the message (as 'cancelled').
CREATE OR REPLACE FUNCTION :"schema".message_extend(bigint[], uuid[], float8)
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
    IF $3 IS NULL OR NOT ($3 > 0 AND $3 <= 3155760000) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('seconds must be from 0 (excluded) to 3155760000, got %s', coalesce($3::text, 'NULL'));
    END IF;
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest($1::bigint[], $2::uuid[]) AS t(id, lease)
    ),
    extended AS (
        UPDATE messages m
        SET visible_at = now() + make_interval(secs => $3::float8)
        FROM input i
        WHERE m.id = i.id AND m.lease = i.lease
        RETURNING m.id, m.visible_at, m.cancel_requested_at
    )
    SELECT i.id,
           CASE WHEN e.id IS NOT NULL THEN
                    CASE WHEN e.cancel_requested_at IS NULL THEN 'ok' ELSE 'cancelled' END
                WHEN EXISTS (SELECT 1 FROM messages m WHERE m.id = i.id) THEN 'lease_lost'
                ELSE 'not_found' END AS outcome,
           e.visible_at AS visible_until
    FROM input i LEFT JOIN extended e ON e.id = i.id;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_extend(bigint[], uuid[], float8) FROM PUBLIC;
