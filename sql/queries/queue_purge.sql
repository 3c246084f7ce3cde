-- queue_purge: $1 name. Deletes every waiting, delayed and in-flight message
-- of the queue. Returns one row when the queue exists, with the count.
-- The statement is the function of the same name, in sql/functions/queue_purge.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".queue_purge($1::text)
