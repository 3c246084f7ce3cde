-- estimate_delayed: the server function dashboard_estimate_delayed (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT :"schema".dashboard_estimate_delayed($1::text) AS estimate
