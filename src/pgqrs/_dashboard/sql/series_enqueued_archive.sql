-- series_enqueued_archive: the server function dashboard_series_enqueued_archive (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_series_enqueued_archive($1::text, $2::float8, $3::bigint, $4::bigint)
