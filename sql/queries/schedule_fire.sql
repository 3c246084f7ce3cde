-- schedule_fire: $1 name, $2 slots, $3 next slot, $4 the next slot the tick read.
-- The statement is the function of the same name, in sql/functions/schedule_fire.sql.
SELECT * FROM :"schema".schedule_fire($1::text, $2::timestamptz[], $3::timestamptz, $4::timestamptz)
