-- series_archived: the server function dashboard_series_archived (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_series_archived($1::text, $2::float8, $3::bigint)
