-- uninstall: drops every pgqrs object in the schema, then the schema itself
-- when nothing else lives in it (a shared schema such as public survives).
-- The functions dropped are the ones the function ledger names, with
-- whatever signature they have now.
DO $pgqrs$
DECLARE
    f regprocedure;
BEGIN
    IF to_regclass(format('%I.schema_functions', :'schema')) IS NULL THEN
        RETURN;
    END IF;
    FOR f IN EXECUTE format(
        'SELECT p.oid::regprocedure FROM pg_proc p JOIN %I.schema_functions s ON s.name = p.proname '
        'WHERE p.pronamespace = to_regnamespace(%L)', :'schema', :'schema')
    LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$pgqrs$;
DROP TABLE IF EXISTS :"schema".messages, :"schema".archive, :"schema".workers,
    :"schema".queues, :"schema".schema_migrations, :"schema".schema_functions CASCADE;
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
