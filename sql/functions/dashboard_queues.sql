-- dashboard_queues: every queue ($2 NULL) or queue $2, with every column of its
-- row as JSON (so limits added to the queues table later show without a change
-- here), and a bounded look at its messages: `sampled` counts the first $1
-- entries of messages_dequeue_idx (an index-only scan); only when the queue has
-- fewer than $1 messages are they read and classified, exactly. For a bigger
-- one the caller asks the dashboard_estimate_* functions, so no request walks a
-- whole queue.
CREATE OR REPLACE FUNCTION :"schema".dashboard_queues(bigint, text)
RETURNS TABLE (
    name text,
    settings jsonb,
    sampled bigint,
    ready bigint,
    in_flight bigint,
    delayed bigint
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR $1 < 1 OR $1 > 1000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('sample limit must be from 1 to 1000000, got %s', coalesce($1::text, 'NULL'));
    END IF;
    RETURN QUERY
    SELECT q.name, to_jsonb(q), c.sampled, s.ready, s.in_flight, s.delayed
    FROM queues q
    CROSS JOIN LATERAL (
        SELECT count(*) AS sampled
        FROM (SELECT 1 FROM messages m
              WHERE m.queue = q.name
              ORDER BY m.priority DESC, m.id
              LIMIT $1) m
    ) c
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE m.visible_at <= now()) AS ready,
               count(*) FILTER (WHERE m.visible_at > now() AND m.lease IS NOT NULL) AS in_flight,
               count(*) FILTER (WHERE m.visible_at > now() AND m.lease IS NULL) AS delayed
        FROM (SELECT m.visible_at, m.lease
              FROM messages m
              WHERE m.queue = q.name AND c.sampled < $1
              ORDER BY m.priority DESC, m.id  -- the index, not a scan, even for a rare queue
              LIMIT $1) m
    ) s
    WHERE $2::text IS NULL OR q.name = $2::text
    ORDER BY q.name;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_queues(bigint, text) FROM PUBLIC;
