-- oldest_ready: the server function dashboard_oldest_ready (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_oldest_ready($1::text, $2::bigint)
