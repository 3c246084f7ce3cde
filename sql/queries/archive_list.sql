-- archive_list: $1 queue (NULL for all), $2 status (NULL for all), $3 limit.
-- Newest first.
-- The statement is the function of the same name, in sql/functions/archive_list.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".archive_list($1::text, $2::text, $3::bigint)
