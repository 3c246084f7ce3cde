-- queue_delete: delete queue $1 with its waiting and in-flight messages (its
-- archive stays). The statement is the function of the same name, in
-- sql/migrations/0003_queue_check_per_statement.sql.
SELECT * FROM :"schema".queue_delete($1::text)
