-- worker_heartbeat: $1 worker id, $2 status ('running' or 'stopping').
-- Returns the row's status; a worker that was marked dead (it missed its
-- heartbeats) comes back to life here.
UPDATE :"schema".workers
SET heartbeat_at = now(), status = $2
WHERE id = $1
RETURNING status
