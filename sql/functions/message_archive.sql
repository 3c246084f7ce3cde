-- message_archive: move leased messages to the archive, fenced by lease.
--   $1 ids bigint[], $2 leases uuid[], $3 statuses text[],
--   $4 results text[] (JSON texts or NULL), $5 errors text[] (JSON texts or NULL)
-- Only a row whose current lease equals the given one moves; one result row
-- per input: outcome 'ok', 'lease_lost' (the row is there under another
-- lease, or none) or 'not_found' (no such waiting or in-flight message).
-- A message whose cancellation was requested (message_cancel) is archived as
-- 'cancelled' whatever status was given, its result dropped: outcome
-- 'cancelled'. Its progress goes to the archive.
CREATE OR REPLACE FUNCTION :"schema".message_archive(bigint[], uuid[], text[], text[], text[])
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
    IF EXISTS (SELECT 1 FROM unnest($3::text[]) s WHERE s IS NULL OR s !~ '^[a-z][a-z0-9_]{0,31}$') THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('archive statuses must be lower-case words such as completed, got %s', $3);
    END IF;
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
             status, result, error, progress, group_key)
        SELECT mv.id, mv.queue, mv.payload, mv.priority, mv.attempts, mv.enqueued_at, mv.dequeued_at,
               mv.dedup_key, mv.headers,
               CASE WHEN mv.cancel_requested_at IS NULL THEN i.status ELSE 'cancelled' END,
               CASE WHEN mv.cancel_requested_at IS NULL THEN i.result::jsonb END,
               coalesce(i.error::jsonb, mv.last_error), mv.progress, mv.group_key
        FROM moved mv JOIN input i ON i.id = mv.id
        RETURNING id, status
    )
    SELECT i.id,
           CASE WHEN a.id IS NOT NULL THEN
                    CASE WHEN a.status = 'cancelled' AND i.status <> 'cancelled' THEN 'cancelled'
                         ELSE 'ok' END
                WHEN EXISTS (SELECT 1 FROM messages m WHERE m.id = i.id) THEN 'lease_lost'
                ELSE 'not_found' END AS outcome,
           NULL::timestamptz AS visible_until
    FROM input i LEFT JOIN archived a ON a.id = i.id;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_archive(bigint[], uuid[], text[], text[], text[]) FROM PUBLIC;
