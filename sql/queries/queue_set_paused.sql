-- queue_set_paused: $1 name, $2 paused. A paused queue keeps accepting
-- messages but delivers none.
UPDATE :"schema".queues SET paused = $2 WHERE name = $1 RETURNING name, paused
