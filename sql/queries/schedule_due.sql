-- schedule_due: the schedules due (and the earliest upcoming slot): a worker's tick.
-- The statement is the function of the same name, in sql/functions/schedule_due.sql.
SELECT * FROM :"schema".schedule_due()
