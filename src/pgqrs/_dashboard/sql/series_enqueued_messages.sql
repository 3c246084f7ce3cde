-- series_enqueued_messages: the server function dashboard_series_enqueued_messages (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_series_enqueued_messages($1::text, $2::float8, $3::bigint, $4::bigint)
