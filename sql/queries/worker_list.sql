-- worker_list: every known worker, newest first, with the number of messages
-- it holds leased right now.
-- The statement is the function of the same name, in sql/functions/worker_list.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".worker_list()
