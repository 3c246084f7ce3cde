-- schema_bootstrap: run inside the install transaction, after migration_lock.
-- Creates the schema and the two ledgers when missing: the migrations
-- applied (by version) and the server functions created (by name), each with
-- the sha256 of its file as shipped.
CREATE SCHEMA IF NOT EXISTS :"schema";
CREATE TABLE IF NOT EXISTS :"schema".schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS :"schema".schema_functions (
    name       text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
