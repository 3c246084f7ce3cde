-- estimate_ready: the server function dashboard_estimate_ready (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT :"schema".dashboard_estimate_ready($1::text) AS estimate
