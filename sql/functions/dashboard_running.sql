-- dashboard_running: messages held right now by a worker, found in the first $1
-- rows of each queue in delivery order (messages_dequeue_idx; leased messages
-- are the oldest ones, at the front). leased_by has no index: this bound keeps
-- the page fast on a queue of millions. Lease tokens are not returned.
CREATE OR REPLACE FUNCTION :"schema".dashboard_running(bigint)
RETURNS TABLE (
    leased_by bigint,
    id bigint,
    queue text,
    attempts integer,
    dequeued_at timestamptz,
    visible_at timestamptz
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR $1 < 1 OR $1 > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('rows per queue must be from 1 to 100000, got %s', coalesce($1::text, 'NULL'));
    END IF;
    RETURN QUERY
    SELECT m.leased_by, m.id, m.queue, m.attempts, m.dequeued_at, m.visible_at
    FROM queues q
    CROSS JOIN LATERAL (
        SELECT x.id, x.queue, x.attempts, x.dequeued_at, x.visible_at, x.lease, x.leased_by
        FROM messages x
        WHERE x.queue = q.name
        ORDER BY x.priority DESC, x.id
        LIMIT $1
    ) m
    WHERE m.lease IS NOT NULL AND m.visible_at > now() AND m.leased_by IS NOT NULL
    ORDER BY m.leased_by, m.id;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_running(bigint) FROM PUBLIC;
