-- archive_purge: $1 older than (seconds), $2 queue (NULL for all),
-- $3 status (NULL for all). Returns the number of rows removed.
WITH purged AS (
    DELETE FROM :"schema".archive
    WHERE archived_at < now() - make_interval(secs => $1::float8)
      AND ($2::text IS NULL OR queue = $2)
      AND ($3::text IS NULL OR status = $3)
    RETURNING 1
)
SELECT count(*) AS purged FROM purged
