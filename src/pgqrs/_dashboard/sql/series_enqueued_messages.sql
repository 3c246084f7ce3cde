-- series_enqueued_messages: $1 queue, $2 window in seconds, $3 rows read at
-- most, $4 rows looked up at most when sampling. Messages of the queue
-- enqueued per minute over the window, among the messages table's rows (the
-- dashboard adds up this statement and its twin on the other table, run at
-- once on two connections). enqueued_at has no index, but ids follow enqueue
-- order, so a binary search over the primary key (about 20 probes) finds the
-- first id of the window; then the window is read whole (one primary-key
-- range) when it holds at most $3 ids, else every step-th id is looked up ($4
-- at most), each counting for step messages: an estimate, which the
-- 'step:enqueued' row announces. Minutes are Unix times (seconds).
WITH RECURSIVE
cutoff AS (SELECT now() - make_interval(secs => $2::float8) AS t),
m_search(lo, hi) AS (
    SELECT coalesce((SELECT min(id) FROM :"schema".messages), 0),
           coalesce((SELECT max(id) FROM :"schema".messages), 0) + 1
    UNION ALL
    SELECT CASE WHEN p.enqueued_at < (SELECT t FROM cutoff) THEN p.id + 1 ELSE s.lo END,
           CASE WHEN p.enqueued_at < (SELECT t FROM cutoff) THEN s.hi ELSE (s.lo + s.hi) / 2 END
    FROM m_search s
    LEFT JOIN LATERAL (
        SELECT m.id, m.enqueued_at FROM :"schema".messages m
        WHERE m.id >= (s.lo + s.hi) / 2 ORDER BY m.id LIMIT 1
    ) p ON true
    WHERE s.lo < s.hi
),
m_range AS (
    -- The window's ids in messages: all of them when at most $3, else every
    -- step-th, so that at most $4 are read.
    SELECT r.lo, r.hi,
           CASE WHEN r.hi - r.lo + 1 <= $3 THEN 1
                ELSE ceil((r.hi - r.lo + 1)::numeric / $4)::bigint END AS step
    FROM (SELECT (SELECT min(hi) FROM m_search) AS lo,
                 coalesce((SELECT max(id) FROM :"schema".messages), 0) AS hi) r
),
enq_m AS MATERIALIZED (
    -- All of the window (one primary-key range) ...
    SELECT m.queue, m.enqueued_at, 1::bigint AS step
    FROM :"schema".messages m
    WHERE (SELECT step FROM m_range) = 1
      AND m.id BETWEEN (SELECT lo FROM m_range) AND (SELECT hi FROM m_range)
    UNION ALL
    -- ... or every step-th id, one primary-key lookup each.
    SELECT m.queue, m.enqueued_at, r.step
    FROM m_range r
    CROSS JOIN LATERAL generate_series(r.lo, r.hi, r.step) g(id)
    CROSS JOIN LATERAL (SELECT queue, enqueued_at FROM :"schema".messages x
                        WHERE x.id = g.id) m
    WHERE r.step > 1
)
SELECT 'enqueued' AS series,
       extract(epoch FROM date_trunc('minute', e.enqueued_at))::bigint AS minute,
       sum(e.step) AS n
FROM enq_m e
WHERE e.queue = $1 AND e.enqueued_at >= (SELECT t FROM cutoff)
GROUP BY 2
UNION ALL
SELECT 'step:enqueued', NULL, (SELECT step FROM m_range)
WHERE (SELECT step FROM m_range) > 1
