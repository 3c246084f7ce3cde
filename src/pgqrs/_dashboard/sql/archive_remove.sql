-- archive_remove: the server function dashboard_archive_remove (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_archive_remove($1::bigint)
