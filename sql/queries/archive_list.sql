-- archive_list: $1 queue (NULL for all), $2 status (NULL for all), $3 limit.
-- Newest first.
SELECT id, queue, payload, priority, attempts, enqueued_at, dequeued_at, dedup_key, headers,
       archived_at, status, result, error
FROM :"schema".archive
WHERE ($1::text IS NULL OR queue = $1)
  AND ($2::text IS NULL OR status = $2)
ORDER BY archived_at DESC, id DESC
LIMIT $3
