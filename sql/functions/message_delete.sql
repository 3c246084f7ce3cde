-- message_delete: delete leased messages outright, fenced by lease.
--   $1 ids bigint[], $2 leases uuid[]
-- One result row per input, as message_archive.
CREATE OR REPLACE FUNCTION :"schema".message_delete(bigint[], uuid[])
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

REVOKE ALL ON FUNCTION :"schema".message_delete(bigint[], uuid[]) FROM PUBLIC;
