-- archive_search: the server function dashboard_archive_search (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_archive_search($1::text, $2::text, $3::timestamptz, $4::timestamptz, $5::timestamptz, $6::bigint, $7::bigint)
