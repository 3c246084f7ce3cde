-- message_delete: delete leased messages, fenced by lease: ids $1, leases $2.
-- The statement is the function of the same name, in
-- sql/functions/message_delete.sql (its plan is cached by the server).
SELECT * FROM :"schema".message_delete($1::bigint[], $2::uuid[])
