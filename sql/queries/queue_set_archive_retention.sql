-- queue_set_archive_retention: keep queue $1's archive for $2 seconds (NULL: for ever).
-- The statement is the function of the same name, in sql/functions/queue_set_archive_retention.sql.
SELECT * FROM :"schema".queue_set_archive_retention($1::text, $2::float8)
