-- queue_delete: delete queue $1 with its waiting and in-flight messages (its
-- archive stays). The statement is the function of the same name, in
-- sql/functions/queue_delete.sql.
SELECT * FROM :"schema".queue_delete($1::text)
