-- uninstall: drops every pgqrs object in the schema, then the schema itself
-- when nothing else lives in it (a shared schema such as public survives).
DROP TABLE IF EXISTS :"schema".messages, :"schema".archive, :"schema".workers,
    :"schema".queues, :"schema".schema_migrations CASCADE;
DO $pgqrs$
BEGIN
    IF :'schema' <> 'public' AND NOT EXISTS (
        SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = :'schema'
        UNION ALL
        SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = :'schema'
    ) THEN
        EXECUTE format('DROP SCHEMA IF EXISTS %I', :'schema');
    END IF;
END
$pgqrs$;
