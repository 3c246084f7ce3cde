-- archive_counts: the server function dashboard_archive_counts (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_archive_counts($1::bigint, $2::float8, $3::text)
