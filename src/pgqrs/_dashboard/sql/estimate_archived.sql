-- estimate_archived: the server function dashboard_estimate_archived (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT :"schema".dashboard_estimate_archived($1::text, $2::text) AS estimate
