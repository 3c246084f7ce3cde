-- archive_get: the archived rows of messages $1 (ids).
-- The statement is the function of the same name, in sql/functions/archive_get.sql.
SELECT * FROM :"schema".archive_get($1::bigint[])
