-- migration_list: the migrations recorded as applied (call only once
-- migration_installed says the ledger exists).
SELECT version, name, checksum
FROM :"schema".schema_migrations
ORDER BY version
