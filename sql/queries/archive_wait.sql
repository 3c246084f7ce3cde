-- archive_wait: register interest in messages $1 for $2 seconds (NULL: unregister); their archived rows.
-- The statement is the function of the same name, in sql/functions/archive_wait.sql.
SELECT * FROM :"schema".archive_wait($1::bigint[], $2::float8)
