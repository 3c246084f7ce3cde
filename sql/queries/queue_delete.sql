-- queue_delete: $1 name. Its waiting and in-flight messages go with it
-- (ON DELETE CASCADE); its archive stays for audit.
DELETE FROM :"schema".queues WHERE name = $1 RETURNING name
