-- queue_create: $1 name, $2 visibility timeout (seconds), $3 max attempts,
-- $4 concurrency_limit, $5 group_concurrency, $6 rate_count, $7 rate_period
-- (seconds), $8 rate per group (limits NULL: none).
-- Returns the new queue, or no row when it already exists.
-- The statement is the function of the same name, in sql/functions/queue_create.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".queue_create($1::text, $2::float8, $3::integer, $4::integer, $5::integer, $6::integer, $7::float8, $8::boolean)
