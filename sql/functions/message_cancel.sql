-- message_cancel: cancel messages $1 (ids). One result row per distinct id:
--   'cancelled'         it was waiting or delayed (or its lease had run out):
--                       archived now with status 'cancelled';
--   'cancel_requested'  it is leased: marked (cancel_requested_at); its holder
--                       learns it at its next fenced statement or cancel poll
--                       and archives it as 'cancelled'; if the holder dies, the
--                       next dequeue archives it as 'cancelled' instead of
--                       delivering it again;
--   'archived'          already archived (status says how it ended): nothing
--                       to cancel;
--   'not_found'         no such message.
-- A row a dequeue holds locked at this moment is waited for (not skipped), so
-- the answer is exact: a message ends archived once, with one status.
CREATE OR REPLACE FUNCTION :"schema".message_cancel(bigint[])
RETURNS TABLE (
    id bigint,
    outcome text,
    status text
)
LANGUAGE plpgsql
SECURITY DEFINER
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
DECLARE
    now_cancelled bigint[];
    requested bigint[];
BEGIN
    IF $1 IS NULL OR cardinality($1) > 10000 OR array_position($1, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('ids must be an array of at most 10000 non-NULL message ids, got %s',
                             coalesce(left($1::text, 100), 'NULL'));
    END IF;
    -- One statement decides and writes; ids it did not find in messages are
    -- looked up in the archive by a second statement, whose snapshot is
    -- newer: a message archived by a transaction this one waited for (its row
    -- lock) shows there, not as 'not_found'.
    WITH input AS (
        SELECT DISTINCT i AS id FROM unnest($1) i
    ),
    locked AS MATERIALIZED (
        SELECT m.id, (m.lease IS NOT NULL AND m.visible_at > now()) AS leased
        FROM messages m
        WHERE m.id = ANY (ARRAY(SELECT i.id FROM input i))
        FOR UPDATE OF m
    ),
    gone AS (
        DELETE FROM messages m
        WHERE m.id = ANY (ARRAY(SELECT l.id FROM locked l WHERE NOT l.leased))
        RETURNING m.*
    ),
    archived AS (
        INSERT INTO archive
            (id, queue, payload, priority, attempts, enqueued_at, dequeued_at, dedup_key, headers,
             status, error, progress)
        SELECT g.id, g.queue, g.payload, g.priority, g.attempts, g.enqueued_at, g.dequeued_at,
               g.dedup_key, g.headers, 'cancelled', g.last_error, g.progress
        FROM gone g
        RETURNING id
    ),
    marked AS (
        UPDATE messages m
        SET cancel_requested_at = coalesce(m.cancel_requested_at, now())
        WHERE m.id = ANY (ARRAY(SELECT l.id FROM locked l WHERE l.leased))
        RETURNING m.id
    )
    SELECT coalesce(array_agg(a.id), '{}'), (SELECT coalesce(array_agg(k.id), '{}') FROM marked k)
    INTO now_cancelled, requested
    FROM archived a;
    RETURN QUERY
    SELECT i.id,
           CASE WHEN i.id = ANY (now_cancelled) THEN 'cancelled'
                WHEN i.id = ANY (requested) THEN 'cancel_requested'
                WHEN old.id IS NOT NULL THEN 'archived'
                ELSE 'not_found' END,
           CASE WHEN i.id = ANY (now_cancelled) THEN 'cancelled' ELSE old.status END
    FROM (SELECT DISTINCT x AS id FROM unnest($1) x) i
    LEFT JOIN archive old ON old.id = i.id
                         AND NOT i.id = ANY (now_cancelled) AND NOT i.id = ANY (requested)
    ORDER BY i.id;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_cancel(bigint[]) FROM PUBLIC;
