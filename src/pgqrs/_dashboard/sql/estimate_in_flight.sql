-- dashboard_estimate_in_flight: $1 queue. The planner's estimate (nothing is
-- executed), as dashboard_estimate_ready.
EXPLAIN (FORMAT JSON) SELECT 1 FROM :"schema".messages
WHERE queue = $1::text AND visible_at > now() AND lease IS NOT NULL
