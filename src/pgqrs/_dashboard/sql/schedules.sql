-- schedules: the server function dashboard_schedules (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_schedules($1::bigint)
