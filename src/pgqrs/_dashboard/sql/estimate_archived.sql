-- dashboard_estimate_archived: $1 queue, $2 status. The planner's estimate
-- (nothing is executed), for (queue, status) pairs too big to count.
EXPLAIN (FORMAT JSON) SELECT 1 FROM :"schema".archive WHERE queue = $1::text AND status = $2::text
