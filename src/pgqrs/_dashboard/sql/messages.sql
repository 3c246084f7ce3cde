-- messages: the server function dashboard_messages (sql/functions/), which
-- documents it; the dashboard's roles have EXECUTE on it, not table privileges.
SELECT * FROM :"schema".dashboard_messages($1::text, $2::integer, $3::bigint, $4::bigint, $5::text, $6::bigint)
