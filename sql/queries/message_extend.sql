-- message_extend: keep leases for $3 more seconds, fenced by lease: ids $1, leases $2.
-- The statement is the function of the same name, in
-- sql/functions/message_extend.sql (its plan is cached by the server).
SELECT * FROM :"schema".message_extend($1::bigint[], $2::uuid[], $3::float8)
