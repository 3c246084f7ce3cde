-- queue_list: every queue, by name.
-- The statement is the function of the same name, in sql/functions/queue_list.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".queue_list()
