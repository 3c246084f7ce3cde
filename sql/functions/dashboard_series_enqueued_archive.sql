-- dashboard_series_enqueued_archive: $1 queue, $2 window in seconds, $3 rows
-- read at most, $4 rows looked up at most when sampling. Messages of the queue
-- enqueued per minute over the window, among the archive table's rows (the
-- dashboard adds up this function and its twin on the messages table, run at
-- once on two connections). enqueued_at has no index, but ids follow enqueue
-- order, so a binary search over the primary key (about 20 probes) finds the
-- first id of the window; then the window is read whole (one primary-key range)
-- when it holds at most $3 ids, else every step-th id is looked up ($4 at
-- most), each counting for step messages: an estimate, which the
-- 'step:enqueued' row announces. Minutes are Unix times (seconds).
CREATE OR REPLACE FUNCTION :"schema".dashboard_series_enqueued_archive(text, double precision, bigint, bigint)
RETURNS TABLE (series text, minute bigint, n bigint)
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
    IF $2 IS NULL OR NOT ($2 > 0 AND $2 <= 31622400) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('window must be from 0 to 31622400 seconds (366 days), got %s',
                             coalesce($2::text, 'NULL'));
    END IF;
    IF $3 IS NULL OR $3 < 1 OR $3 > 10000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('rows read must be from 1 to 10000000, got %s', coalesce($3::text, 'NULL'));
    END IF;
    IF $4 IS NULL OR $4 < 1 OR $4 > 10000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('rows sampled must be from 1 to 10000000, got %s', coalesce($4::text, 'NULL'));
    END IF;
    RETURN QUERY
    WITH RECURSIVE
    cutoff AS (SELECT now() - make_interval(secs => $2) AS t),
    search(lo, hi) AS (
        SELECT coalesce((SELECT min(x.id) FROM archive x), 0),
               coalesce((SELECT max(x.id) FROM archive x), 0) + 1
        UNION ALL
        SELECT CASE WHEN p.enqueued_at < (SELECT t FROM cutoff) THEN p.id + 1 ELSE s.lo END,
               CASE WHEN p.enqueued_at < (SELECT t FROM cutoff) THEN s.hi ELSE (s.lo + s.hi) / 2 END
        FROM search s
        LEFT JOIN LATERAL (
            SELECT x.id, x.enqueued_at FROM archive x
            WHERE x.id >= (s.lo + s.hi) / 2 ORDER BY x.id LIMIT 1
        ) p ON true
        WHERE s.lo < s.hi
    ),
    id_range AS (
        -- The window's ids: all of them when at most $3, else every step-th, so
        -- that at most $4 are read.
        SELECT r.lo, r.hi,
               CASE WHEN r.hi - r.lo + 1 <= $3 THEN 1
                    ELSE ceil((r.hi - r.lo + 1)::numeric / $4)::bigint END AS step
        FROM (SELECT (SELECT min(s.hi) FROM search s) AS lo,
                     coalesce((SELECT max(x.id) FROM archive x), 0) AS hi) r
    ),
    enq AS MATERIALIZED (
        -- All of the window (one primary-key range) ...
        SELECT x.queue, x.enqueued_at, 1::bigint AS step
        FROM archive x
        WHERE (SELECT r.step FROM id_range r) = 1
          AND x.id BETWEEN (SELECT r.lo FROM id_range r) AND (SELECT r.hi FROM id_range r)
        UNION ALL
        -- ... or every step-th id, one primary-key lookup each.
        SELECT y.queue, y.enqueued_at, r.step
        FROM id_range r
        CROSS JOIN LATERAL generate_series(r.lo, r.hi, r.step) g(id)
        CROSS JOIN LATERAL (SELECT x.queue, x.enqueued_at FROM archive x
                            WHERE x.id = g.id) y
        WHERE r.step > 1
    )
    SELECT 'enqueued', extract(epoch FROM date_trunc('minute', e.enqueued_at))::bigint,
           sum(e.step)::bigint
    FROM enq e
    WHERE e.queue = $1 AND e.enqueued_at >= (SELECT t FROM cutoff)
    GROUP BY 2
    UNION ALL
    SELECT 'step:enqueued', NULL, (SELECT r.step FROM id_range r)
    WHERE (SELECT r.step FROM id_range r) > 1;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_series_enqueued_archive(text, double precision, bigint, bigint) FROM PUBLIC;
