-- message_retry: the server function dashboard_message_retry (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_message_retry($1::bigint)
