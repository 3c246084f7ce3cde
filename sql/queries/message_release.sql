-- message_release: give leased messages back, fenced by lease: ids $1, leases $2,
-- delays $3, errors $4, refunds $5.
-- The statement is the function of the same name, in
-- sql/functions/message_release.sql (its plan is cached by the server).
SELECT * FROM :"schema".message_release($1::bigint[], $2::uuid[], $3::float8[], $4::text[], $5::boolean[])
