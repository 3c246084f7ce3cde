-- queue_stats: $1 name. One row when the queue exists.
-- The statement is the function of the same name, in sql/functions/queue_stats.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".queue_stats($1::text)
