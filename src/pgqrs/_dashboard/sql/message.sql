-- message: the server function dashboard_message (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_message($1::bigint)
