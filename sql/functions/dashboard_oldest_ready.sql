-- dashboard_oldest_ready: $1 queue, $2 rows looked at per priority. Seconds
-- since the oldest ready message of the queue was enqueued. A loose index scan
-- over the queue's distinct priorities (messages_dequeue_idx), then per
-- priority the first ready row in id order (ids follow enqueue order), within
-- the first $2 rows: bounded however big the queue is.
CREATE OR REPLACE FUNCTION :"schema".dashboard_oldest_ready(text, bigint)
RETURNS TABLE (oldest_ready_age double precision)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = 'queue must not be NULL';
    END IF;
    IF $2 IS NULL OR $2 < 1 OR $2 > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('rows per priority must be from 1 to 100000, got %s', coalesce($2::text, 'NULL'));
    END IF;
    RETURN QUERY
    WITH RECURSIVE p(priority) AS (
        (SELECT m.priority FROM messages m WHERE m.queue = $1 ORDER BY m.priority DESC LIMIT 1)
        UNION ALL
        SELECT (SELECT m.priority FROM messages m
                WHERE m.queue = $1 AND m.priority < p.priority
                ORDER BY m.priority DESC LIMIT 1)
        FROM p
        WHERE p.priority IS NOT NULL
    )
    SELECT extract(epoch FROM now() - min(f.enqueued_at))::float8
    FROM p
    CROSS JOIN LATERAL (
        SELECT w.enqueued_at
        FROM (SELECT m.enqueued_at, m.visible_at FROM messages m
              WHERE m.queue = $1 AND m.priority = p.priority
              ORDER BY m.id
              LIMIT $2) w
        WHERE w.visible_at <= now()
        LIMIT 1
    ) f
    WHERE p.priority IS NOT NULL;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_oldest_ready(text, bigint) FROM PUBLIC;
