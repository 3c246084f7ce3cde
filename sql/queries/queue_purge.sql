-- queue_purge: $1 name. Deletes every waiting, delayed and in-flight message
-- of the queue. Returns one row when the queue exists, with the count.
WITH q AS (
    SELECT name FROM :"schema".queues WHERE name = $1
),
purged AS (
    DELETE FROM :"schema".messages WHERE queue = (SELECT name FROM q) RETURNING 1
)
SELECT q.name, (SELECT count(*) FROM purged) AS purged FROM q
