-- schedule_list: every schedule, by name.
-- The statement is the function of the same name, in sql/functions/schedule_list.sql.
SELECT * FROM :"schema".schedule_list()
