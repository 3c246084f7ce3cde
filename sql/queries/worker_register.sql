-- worker_register: $1 hostname, $2 pid, $3 queues text[], $4 whether the worker
-- LISTENs for enqueues (enqueue statements NOTIFY only when a listening worker
-- serves their queue). Returns the id.
INSERT INTO :"schema".workers (hostname, pid, queues, listening)
VALUES ($1, $2, $3::text[], $4::boolean)
RETURNING id, started_at
