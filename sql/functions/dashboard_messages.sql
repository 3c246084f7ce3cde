-- dashboard_messages: one page of queue $1's messages in delivery order
-- (priority DESC, id), after the keyset ($2 priority, $3 id; both NULL for the
-- first page), reading at most $4 rows of the index (messages_dequeue_idx),
-- keeping those in state $5 (ready, in_flight, delayed; NULL for all), at most
-- $6 of them. The two branches are each one index range, so page 1000 costs
-- what page 1 does. The last row, kind 'scanned', gives the key of the last row
-- read, to continue from when a filter kept fewer than $6 of the $4 rows read.
CREATE OR REPLACE FUNCTION :"schema".dashboard_messages(text, integer, bigint, bigint, text, bigint)
RETURNS TABLE (
    kind text,
    id bigint,
    priority integer,
    attempts integer,
    visible_at timestamptz,
    enqueued_at timestamptz,
    dequeued_at timestamptz,
    state text,
    preview text,
    leased_by bigint,
    dedup_key text,
    has_error boolean,
    scanned bigint
)
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
    IF ($2 IS NULL) <> ($3 IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = 'the keyset needs both priority and id, or neither';
    END IF;
    IF $4 IS NULL OR $4 < 1 OR $4 > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('scan limit must be from 1 to 100000, got %s', coalesce($4::text, 'NULL'));
    END IF;
    IF $5 IS NOT NULL AND $5 NOT IN ('ready', 'in_flight', 'delayed') THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('state must be ready, in_flight, delayed or NULL, got %L', $5);
    END IF;
    IF $6 IS NULL OR $6 < 1 OR $6 > 10001 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('limit must be from 1 to 10001, got %s', coalesce($6::text, 'NULL'));
    END IF;
    RETURN QUERY
    WITH scanned AS MATERIALIZED (
        SELECT u.id, u.priority, u.visible_at, u.lease
        FROM (
            (SELECT m.id, m.priority, m.visible_at, m.lease FROM messages m
             WHERE m.queue = $1 AND $2::integer IS NOT NULL AND m.priority = $2::integer
               AND m.id > $3::bigint
             ORDER BY m.priority DESC, m.id
             LIMIT $4)
            UNION ALL
            (SELECT m.id, m.priority, m.visible_at, m.lease FROM messages m
             WHERE m.queue = $1 AND ($2::integer IS NULL OR m.priority < $2::integer)
             ORDER BY m.priority DESC, m.id
             LIMIT $4)
        ) u
        ORDER BY u.priority DESC, u.id
        LIMIT $4
    ),
    classified AS (
        SELECT s.id, s.priority,
               CASE WHEN s.visible_at <= now() THEN 'ready'
                    WHEN s.lease IS NOT NULL THEN 'in_flight'
                    ELSE 'delayed' END AS state
        FROM scanned s
    ),
    picked AS (
        SELECT c.id, c.state FROM classified c
        WHERE $5::text IS NULL OR c.state = $5::text
        ORDER BY c.priority DESC, c.id
        LIMIT $6
    ),
    rows_ AS (
        SELECT 'row' AS kind, m.id, m.priority, m.attempts, m.visible_at, m.enqueued_at,
               m.dequeued_at, p.state, left(m.payload::text, 160) AS preview, m.leased_by,
               m.dedup_key, m.last_error IS NOT NULL AS has_error,
               (SELECT count(*) FROM scanned) AS scanned
        FROM picked p
        JOIN messages m ON m.id = p.id
        UNION ALL
        (SELECT 'scanned', s.id, s.priority, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                (SELECT count(*) FROM scanned)
         FROM scanned s
         ORDER BY s.priority, s.id DESC
         LIMIT 1)
    )
    SELECT r.kind, r.id, r.priority, r.attempts, r.visible_at, r.enqueued_at, r.dequeued_at,
           r.state, r.preview, r.leased_by, r.dedup_key, r.has_error, r.scanned
    FROM rows_ r
    ORDER BY r.kind, r.priority DESC, r.id;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_messages(text, integer, bigint, bigint, text, bigint) FROM PUBLIC;
