-- archive_purge: $1 older than (seconds), $2 queue (NULL for all),
-- $3 status (NULL for all). Returns the number of rows removed.
-- The statement is the function of the same name, in sql/functions/archive_purge.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".archive_purge($1::float8, $2::text, $3::text)
