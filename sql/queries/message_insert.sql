-- message_insert: enqueue messages without dedup keys: queue $1, payloads $2 (one
-- JSON array text), priority $3, delay $4, available_at $5, headers $6, group $7.
-- The statement is the function of the same name, in sql/functions/message_insert.sql;
-- One row: the new ids in id order (which is the payloads' order), and the
-- enqueue and visible times every message of the statement shares (now(), and
-- the visible time message_insert computes once); ids NULL when the queue is
-- missing. One row instead of one per message: the client parsed two
-- timestamps a message (~1.5 us of its CPU each, measured).
SELECT array_agg(i.id ORDER BY i.id) AS ids,
       min(i.enqueued_at) AS enqueued_at,
       min(i.visible_until) AS visible_until
FROM :"schema".message_insert($1::text, $2::text, $3::integer, $4::float8, $5::timestamptz, $6::text, $7::text) i
