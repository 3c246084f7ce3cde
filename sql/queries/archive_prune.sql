-- archive_prune: delete at most $2 archived messages of queue $1 older than its retention.
-- The statement is the function of the same name, in sql/functions/archive_prune.sql.
SELECT * FROM :"schema".archive_prune($1::text, $2::integer)
