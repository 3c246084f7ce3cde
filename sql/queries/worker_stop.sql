-- worker_stop: $1 worker id. Marks a worker that shut down cleanly.
UPDATE :"schema".workers
SET status = 'stopped', stopped_at = now(), heartbeat_at = now()
WHERE id = $1
