-- schedule_delete: $1 name.
-- The statement is the function of the same name, in sql/functions/schedule_delete.sql.
SELECT * FROM :"schema".schedule_delete($1::text)
