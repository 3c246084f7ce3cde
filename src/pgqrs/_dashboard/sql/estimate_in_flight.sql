-- estimate_in_flight: the server function dashboard_estimate_in_flight (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT :"schema".dashboard_estimate_in_flight($1::text) AS estimate
