-- queues: the server function dashboard_queues (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_queues($1::bigint, $2::text)
