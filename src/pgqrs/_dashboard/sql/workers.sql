-- workers: the server function dashboard_workers (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_workers($1::bigint)
