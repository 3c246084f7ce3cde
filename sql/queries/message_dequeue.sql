-- message_dequeue: lease up to $2 ready messages of queue $1 for $3 seconds (NULL: the
-- queue's default), taken by worker $4 (NULL for a plain consumer).
-- The statement is the function of the same name, in
-- sql/functions/message_dequeue.sql (its plan is cached by the server).
SELECT * FROM :"schema".message_dequeue($1::text, $2::bigint, $3::float8, $4::bigint)
