-- message_peek: up to $2 messages of queue $1 in delivery order, without
-- leasing them (for operators, dashboards and debugging); state is ready,
-- in_flight or delayed. Lease tokens are never shown (NULL): a reader must
-- not be able to settle another consumer's message. progress: what the
-- running handler last recorded (message_set_progress).
CREATE OR REPLACE FUNCTION :"schema".message_peek(text, bigint)
RETURNS TABLE (
    id bigint,
    queue text,
    payload jsonb,
    priority integer,
    attempts integer,
    enqueued_at timestamptz,
    dequeued_at timestamptz,
    visible_until timestamptz,
    headers jsonb,
    lease uuid,
    dedup_key text,
    last_error jsonb,
    state text,
    progress jsonb
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $2 IS NULL OR $2 < 1 OR $2 > 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('limit must be from 1 to 10000, got %s', coalesce($2::text, 'NULL'));
    END IF;
    RETURN QUERY
    SELECT m.id, m.queue, m.payload, m.priority, m.attempts, m.enqueued_at, m.dequeued_at,
           m.visible_at, m.headers, NULL::uuid, m.dedup_key, m.last_error,
           CASE WHEN m.visible_at <= now() THEN 'ready'
                WHEN m.lease IS NOT NULL THEN 'in_flight'
                ELSE 'delayed' END,
           m.progress
    FROM messages m
    WHERE m.queue = $1
    ORDER BY m.priority DESC, m.id
    LIMIT $2;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_peek(text, bigint) FROM PUBLIC;
