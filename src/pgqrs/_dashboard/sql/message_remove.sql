-- message_remove: the server function dashboard_message_remove (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_message_remove($1::bigint)
