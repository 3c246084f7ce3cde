-- migration_lock: serialises installs of one schema. A transaction-level
-- advisory lock, so it is safe behind a pooler in transaction mode.
SELECT pg_advisory_xact_lock(hashtextextended('pgqrs.install:' || :'schema', 0))
