-- message_fail: settle failed attempts, fenced by lease: ids $1, leases $2,
-- errors $3 (JSON texts or NULL), delays $4 (seconds, NULL: the backoff),
-- force_dead $5, backoff base $6, max $7 (seconds) and jitter $8 (0 to 1).
-- Retry with the backoff, or archive as dead: the statement is the function
-- of the same name, in sql/functions/message_fail.sql.
SELECT * FROM :"schema".message_fail($1::bigint[], $2::uuid[], $3::text[], $4::float8[], $5::boolean[], $6::float8, $7::float8, $8::float8)
