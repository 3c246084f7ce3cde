-- archive_redrive: put archived messages back on their queue, ready now, with
-- their attempts reset. $1 queue, $2 status (usually 'dead'), $3 ids bigint[]
-- (NULL for every match). A message whose dedup key is taken by a waiting
-- message stays archived. Returns the ids put back. The ids are archived
-- message ids, so none is ahead of the messages' identity sequence.
CREATE OR REPLACE FUNCTION :"schema".archive_redrive(text, text, bigint[])
RETURNS TABLE (id bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH q AS MATERIALIZED (
        -- The queue's row, locked as an enqueue locks it: a concurrent
        -- queue_delete waits, so no message is put back into a deleted queue.
        SELECT q.name FROM queues q WHERE q.name = $1 FOR KEY SHARE
    ),
    moved AS (
        DELETE FROM archive a
        WHERE a.queue = $1
          AND a.status = $2
          AND ($3 IS NULL OR a.id = ANY ($3))
          AND EXISTS (SELECT 1 FROM q)
          AND NOT EXISTS (SELECT 1 FROM messages m
                          WHERE m.queue = a.queue AND m.dedup_key = a.dedup_key)
        RETURNING a.*
    )
    INSERT INTO messages AS m
        (id, queue, payload, priority, visible_at, attempts, enqueued_at, dedup_key, headers, last_error,
         group_key)
    OVERRIDING SYSTEM VALUE
    SELECT mv.id, mv.queue, mv.payload, mv.priority, now(), 0, mv.enqueued_at, mv.dedup_key,
           mv.headers, mv.error, mv.group_key
    FROM moved mv
    RETURNING m.id;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".archive_redrive(text, text, bigint[]) FROM PUBLIC;
