-- migration_record: $1 version, $2 name, $3 checksum (sha256 of the file).
INSERT INTO :"schema".schema_migrations (version, name, checksum)
VALUES ($1, $2, $3)
