-- metrics_scrape: queue health for Prometheus, one statement per scrape
-- (SECURITY DEFINER: granted to the read_only role, which has no table privileges).
-- $1 rows looked at per queue at most (the sample), $2 seconds without a
-- heartbeat after which a running worker no longer counts as alive.
--
-- It never scans a whole table. Per queue it reads the first $1 messages in
-- delivery order (the dequeue index, LIMIT); a queue holding fewer is counted
-- exactly. A bigger one is scaled: its sample's shares of ready / delayed /
-- in flight times the planner's row estimate for the queue (pg_class.reltuples
-- times the queue's frequency in pg_stats), at least $1; "estimated" says so.
-- Archive counts per (queue, status) stop at $1 (a lower bound there): the
-- statuses come from a loose index scan of archive_queue_status_idx.
-- Rows: (metric, queue, label, value).
CREATE OR REPLACE FUNCTION :"schema".metrics_scrape(integer, float8)
RETURNS TABLE (metric text, queue text, label text, value float8)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
WITH RECURSIVE q AS (
    SELECT name, paused FROM queues
),
mstats AS (
    SELECT greatest(c.reltuples, 0)::float8 AS reltuples,
           s.most_common_vals::text::text[] AS vals,
           s.most_common_freqs AS freqs
    FROM pg_class c
    LEFT JOIN pg_stats s
      ON s.schemaname = :'schema' AND s.tablename = 'messages' AND s.attname = 'queue'
    WHERE c.oid = ':"schema".messages'::regclass
),
m AS (
    SELECT q.name, q.paused, t.n, t.ready, t.delayed, t.in_flight, t.oldest_ready,
           CASE WHEN t.n < $1 THEN NULL
                ELSE greatest($1::float8, (
                    SELECT e.reltuples * e.freqs[array_position(e.vals, q.name)] FROM mstats e))
           END AS estimate
    FROM q CROSS JOIN LATERAL (
        SELECT count(*) AS n,
               count(*) FILTER (WHERE visible_at <= now()) AS ready,
               count(*) FILTER (WHERE visible_at > now() AND lease IS NULL) AS delayed,
               count(*) FILTER (WHERE visible_at > now() AND lease IS NOT NULL) AS in_flight,
               min(enqueued_at) FILTER (WHERE visible_at <= now()) AS oldest_ready
        FROM (
            SELECT visible_at, lease, enqueued_at
            FROM messages
            WHERE queue = q.name
            ORDER BY priority DESC, id
            LIMIT $1::bigint
        ) sample
    ) t
),
pairs AS (
    (SELECT queue, status FROM archive ORDER BY queue, status LIMIT 1)
    UNION ALL
    SELECT nxt.queue, nxt.status
    FROM pairs p CROSS JOIN LATERAL (
        SELECT a.queue, a.status FROM archive a
        WHERE (a.queue, a.status) > (p.queue, p.status)
        ORDER BY a.queue, a.status
        LIMIT 1
    ) nxt
),
w AS (
    SELECT q.name,
           count(w.id) FILTER (
               WHERE w.heartbeat_at >= now() - make_interval(secs => $2::float8)) AS alive,
           count(w.id) FILTER (
               WHERE w.heartbeat_at < now() - make_interval(secs => $2::float8)) AS stale,
           extract(epoch FROM now() - max(w.heartbeat_at))::float8 AS last_heartbeat_age
    FROM q LEFT JOIN workers w
      ON w.status IN ('running', 'stopping') AND q.name = ANY (w.queues)
    GROUP BY q.name
)
SELECT 'messages' AS metric, name AS queue, state AS label,
       CASE WHEN estimate IS NULL THEN value ELSE round(value * estimate / n) END AS value
FROM m CROSS JOIN LATERAL (
    VALUES ('ready', ready::float8), ('delayed', delayed::float8), ('in_flight', in_flight::float8)
) v (state, value)
UNION ALL
SELECT 'estimated', name, '', (estimate IS NOT NULL)::int::float8 FROM m
UNION ALL
SELECT 'paused', name, '', paused::int::float8 FROM m
UNION ALL
SELECT 'oldest_ready_age', name, '',
       coalesce(greatest(extract(epoch FROM now() - oldest_ready), 0), 0)::float8
FROM m
UNION ALL
SELECT 'archived', p.queue, p.status, c.n::float8
FROM pairs p CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM (
        SELECT 1 FROM archive a
        WHERE a.queue = p.queue AND a.status = p.status
        LIMIT $1::bigint
    ) capped
) c
UNION ALL
SELECT 'workers', name, 'alive', alive::float8 FROM w
UNION ALL
SELECT 'workers', name, 'stale', stale::float8 FROM w
UNION ALL
SELECT 'last_heartbeat_age', name, '', last_heartbeat_age FROM w WHERE last_heartbeat_age IS NOT NULL
$function$;

REVOKE ALL ON FUNCTION :"schema".metrics_scrape(integer, float8) FROM PUBLIC;
