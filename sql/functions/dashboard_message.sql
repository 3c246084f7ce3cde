-- dashboard_message: message $1, waiting (or in flight) or archived, by primary
-- key. where_ is 'messages' or 'archive'; worker_* describe the lease holder.
-- The lease token is never returned (it is a capability: whoever has it can
-- settle the message); leased says whether there is one.
CREATE OR REPLACE FUNCTION :"schema".dashboard_message(bigint)
RETURNS TABLE (
    where_ text,
    id bigint,
    queue text,
    payload jsonb,
    priority integer,
    attempts integer,
    enqueued_at timestamptz,
    dequeued_at timestamptz,
    visible_at timestamptz,
    leased boolean,
    leased_by bigint,
    dedup_key text,
    headers jsonb,
    error jsonb,
    result jsonb,
    status text,
    archived_at timestamptz,
    state text,
    worker_hostname text,
    worker_pid integer,
    worker_status text,
    max_attempts integer,
    progress jsonb,
    cancel_requested_at timestamptz
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = 'message id must not be NULL';
    END IF;
    RETURN QUERY
    SELECT 'messages', m.id, m.queue, m.payload, m.priority, m.attempts, m.enqueued_at,
           m.dequeued_at, m.visible_at, m.lease IS NOT NULL, m.leased_by, m.dedup_key, m.headers,
           m.last_error, NULL::jsonb, NULL::text, NULL::timestamptz,
           CASE WHEN m.visible_at <= now() THEN 'ready'
                WHEN m.lease IS NOT NULL THEN 'in_flight'
                ELSE 'delayed' END,
           w.hostname, w.pid, w.status, q.max_attempts, m.progress,
           m.cancel_requested_at
    FROM messages m
    LEFT JOIN workers w ON w.id = m.leased_by
    LEFT JOIN queues q ON q.name = m.queue
    WHERE m.id = $1
    UNION ALL
    SELECT 'archive', a.id, a.queue, a.payload, a.priority, a.attempts, a.enqueued_at,
           a.dequeued_at, NULL, false, NULL, a.dedup_key, a.headers, a.error, a.result, a.status,
           a.archived_at, a.status, NULL, NULL, NULL, q.max_attempts, a.progress,
           NULL::timestamptz
    FROM archive a
    LEFT JOIN queues q ON q.name = a.queue
    WHERE a.id = $1;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_message(bigint) FROM PUBLIC;
