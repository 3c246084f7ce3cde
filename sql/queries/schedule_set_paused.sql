-- schedule_set_paused: $1 name, $2 paused.
-- The statement is the function of the same name, in sql/functions/schedule_set_paused.sql.
SELECT * FROM :"schema".schedule_set_paused($1::text, $2::boolean)
