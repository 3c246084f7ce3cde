-- role_grant: the GRANT statements giving role $1 the privileges of a
-- producer ($2), a consumer ($3) and/or an admin ($4) on this schema. The
-- client runs them in one transaction. Built with format('%I'), so the role
-- name is always a quoted identifier, never SQL. No row when the role does not
-- exist. Installing and migrating (CREATE in the schema) stays with the owner.
--   producer: enqueue (INSERT; UPDATE of dedup_key only, for ON CONFLICT;
--             EXECUTE on queue_lock, which locks the queue row as the owner).
--             Cannot dequeue, archive, delete, release or purge.
--   consumer: dequeue, archive, delete, extend, release (messages, archive),
--             worker registration and heartbeats. Cannot create or drop queues.
--   admin:    read and write every pgqrs table (queues, archive, workers...).
WITH r AS (
    SELECT rolname FROM pg_roles WHERE rolname = $1::text
),
wanted (ord, stmt, wanted) AS (
    VALUES
        (1, 'GRANT USAGE ON SCHEMA %1$I TO %2$I', true),
        (2, 'GRANT SELECT ON %1$I.queues, %1$I.schema_migrations, %1$I.schema_functions TO %2$I', true),
        (3, 'GRANT SELECT, INSERT ON %1$I.messages TO %2$I', $2::boolean),
        (4, 'GRANT UPDATE (dedup_key) ON %1$I.messages TO %2$I', $2::boolean),
        (5, 'GRANT SELECT, UPDATE, DELETE ON %1$I.messages TO %2$I', $3::boolean),
        (6, 'GRANT SELECT, INSERT ON %1$I.archive TO %2$I', $3::boolean),
        (7, 'GRANT SELECT, INSERT, UPDATE ON %1$I.workers TO %2$I', $3::boolean),
        (8, 'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %1$I TO %2$I', $4::boolean),
        (9, 'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %1$I TO %2$I', $4::boolean),
        (10, 'GRANT EXECUTE ON FUNCTION %1$I.queue_lock(text) TO %2$I', $2::boolean OR $4::boolean)
)
SELECT format(w.stmt, :'schema', r.rolname) AS statement
FROM r CROSS JOIN wanted w
WHERE w.wanted
ORDER BY w.ord
