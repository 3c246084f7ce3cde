-- archive_redrive: put archived messages back on their queue, ready now, with
-- their attempts reset. $1 queue, $2 status (usually 'dead'), $3 ids bigint[]
-- (NULL for every match). Returns the ids put back.
-- The statement is the function of the same name, in sql/functions/archive_redrive.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".archive_redrive($1::text, $2::text, $3::bigint[])
