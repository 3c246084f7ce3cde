-- worker_register: $1 hostname, $2 pid, $3 queues text[]. Returns the id.
INSERT INTO :"schema".workers (hostname, pid, queues)
VALUES ($1, $2, $3::text[])
RETURNING id, started_at
