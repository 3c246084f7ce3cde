-- message_archive: move leased messages to the archive, fenced by lease: ids $1,
-- leases $2, statuses $3, results $4, errors $5.
-- The statement is the function of the same name, in
-- sql/functions/message_archive.sql (its plan is cached by the server).
SELECT * FROM :"schema".message_archive($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[])
