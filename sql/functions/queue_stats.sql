-- queue_stats: queue $1's counts by state, its archive by status, and the
-- backend whose snapshot is oldest. One row when the queue exists.
-- The oldest snapshot is read as the owner, so a role sees it without
-- pg_read_all_stats: only its pid and age, never its query.
CREATE OR REPLACE FUNCTION :"schema".queue_stats(text)
RETURNS TABLE (
    name text,
    paused boolean,
    ready bigint,
    in_flight bigint,
    delayed bigint,
    oldest_ready_age float8,
    archived jsonb,
    oldest_xmin_pid integer,
    oldest_xmin_age float8,
    concurrency_limit integer,
    group_concurrency integer,
    rate_count integer,
    rate_period float8,
    rate_per_group boolean
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH q AS (
        SELECT q.name, q.paused, q.concurrency_limit, q.group_concurrency, q.rate_count, q.rate_period,
               q.rate_per_group
        FROM queues q WHERE q.name = $1
    ),
    m AS (
        SELECT count(*) FILTER (WHERE m.visible_at <= now()) AS ready,
               count(*) FILTER (WHERE m.visible_at > now() AND m.lease IS NOT NULL) AS in_flight,
               count(*) FILTER (WHERE m.visible_at > now() AND m.lease IS NULL) AS delayed,
               extract(epoch FROM now() - min(m.enqueued_at) FILTER (WHERE m.visible_at <= now()))::float8
                   AS oldest_ready_age
        FROM messages m
        WHERE m.queue = $1
    ),
    a AS (
        SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb) AS archived
        FROM (SELECT a.status, count(*) AS n FROM archive a WHERE a.queue = $1 GROUP BY a.status) s
    ),
    x AS (
        -- The backend whose snapshot is oldest: while it stays open, vacuum
        -- cannot remove dead message rows, and every dequeue slows down.
        SELECT s.pid AS oldest_xmin_pid,
               extract(epoch FROM now() - s.xact_start)::float8 AS oldest_xmin_age
        FROM pg_stat_activity s
        WHERE s.backend_xmin IS NOT NULL AND s.pid <> pg_backend_pid()
        ORDER BY age(s.backend_xmin) DESC
        LIMIT 1
    )
    SELECT q.name, q.paused, m.ready, m.in_flight, m.delayed, m.oldest_ready_age, a.archived,
           x.oldest_xmin_pid, x.oldest_xmin_age, q.concurrency_limit, q.group_concurrency,
           q.rate_count, q.rate_period, q.rate_per_group
    FROM q CROSS JOIN m CROSS JOIN a LEFT JOIN x ON true;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_stats(text) FROM PUBLIC;
