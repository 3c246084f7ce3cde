-- series_enqueued_archive: $1 queue, $2 window in seconds, $3 rows read at
-- most, $4 rows looked up at most when sampling. Messages of the queue
-- enqueued per minute over the window, among the archive table's rows (the
-- dashboard adds up this statement and its twin on the other table, run at
-- once on two connections). enqueued_at has no index, but ids follow enqueue
-- order, so a binary search over the primary key (about 20 probes) finds the
-- first id of the window; then the window is read whole (one primary-key
-- range) when it holds at most $3 ids, else every step-th id is looked up ($4
-- at most), each counting for step messages: an estimate, which the
-- 'step:enqueued' row announces. Minutes are Unix times (seconds).
WITH RECURSIVE
cutoff AS (SELECT now() - make_interval(secs => $2::float8) AS t),
a_search(lo, hi) AS (
    SELECT coalesce((SELECT min(id) FROM :"schema".archive), 0),
           coalesce((SELECT max(id) FROM :"schema".archive), 0) + 1
    UNION ALL
    SELECT CASE WHEN p.enqueued_at < (SELECT t FROM cutoff) THEN p.id + 1 ELSE s.lo END,
           CASE WHEN p.enqueued_at < (SELECT t FROM cutoff) THEN s.hi ELSE (s.lo + s.hi) / 2 END
    FROM a_search s
    LEFT JOIN LATERAL (
        SELECT a.id, a.enqueued_at FROM :"schema".archive a
        WHERE a.id >= (s.lo + s.hi) / 2 ORDER BY a.id LIMIT 1
    ) p ON true
    WHERE s.lo < s.hi
),
a_range AS (
    SELECT r.lo, r.hi,
           CASE WHEN r.hi - r.lo + 1 <= $3 THEN 1
                ELSE ceil((r.hi - r.lo + 1)::numeric / $4)::bigint END AS step
    FROM (SELECT (SELECT min(hi) FROM a_search) AS lo,
                 coalesce((SELECT max(id) FROM :"schema".archive), 0) AS hi) r
),
enq_a AS MATERIALIZED (
    SELECT a.queue, a.enqueued_at, 1::bigint AS step
    FROM :"schema".archive a
    WHERE (SELECT step FROM a_range) = 1
      AND a.id BETWEEN (SELECT lo FROM a_range) AND (SELECT hi FROM a_range)
    UNION ALL
    SELECT a.queue, a.enqueued_at, r.step
    FROM a_range r
    CROSS JOIN LATERAL generate_series(r.lo, r.hi, r.step) g(id)
    CROSS JOIN LATERAL (SELECT queue, enqueued_at FROM :"schema".archive x
                        WHERE x.id = g.id) a
    WHERE r.step > 1
)
SELECT 'enqueued' AS series,
       extract(epoch FROM date_trunc('minute', e.enqueued_at))::bigint AS minute,
       sum(e.step) AS n
FROM enq_a e
WHERE e.queue = $1 AND e.enqueued_at >= (SELECT t FROM cutoff)
GROUP BY 2
UNION ALL
SELECT 'step:enqueued', NULL, (SELECT step FROM a_range)
WHERE (SELECT step FROM a_range) > 1
