-- dashboard_estimate_ready: $1 queue. The planner's estimate of the queue's
-- ready messages (read from the plan, nothing is executed): for queues too
-- big to count on every request.
EXPLAIN (FORMAT JSON) SELECT 1 FROM :"schema".messages WHERE queue = $1::text AND visible_at <= now()
