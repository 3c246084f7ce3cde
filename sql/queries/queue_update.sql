-- queue_update: $1 name; then per limit a flag (change it?) and its value
-- (NULL: remove): $2/$3 concurrency_limit, $4/$5 group_concurrency, $6 with
-- $7 rate_count, $8 rate_period (seconds), $9 per group. No row when missing.
-- The statement is the function of the same name, in sql/functions/queue_update.sql
-- (SECURITY DEFINER: roles get EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".queue_update($1::text, $2::boolean, $3::integer, $4::boolean, $5::integer, $6::boolean, $7::integer, $8::float8, $9::boolean)
