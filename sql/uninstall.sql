-- uninstall: drops every pgqrs object in the schema, then the schema itself
-- when nothing else lives in it (a shared schema such as public survives).
DROP TABLE IF EXISTS :"schema".messages, :"schema".archive, :"schema".workers,
    :"schema".queues, :"schema".schema_migrations CASCADE;
DROP FUNCTION IF EXISTS
    :"schema".message_dequeue(text, bigint, float8, bigint),
    :"schema".message_insert(text, text, integer, float8, timestamptz, text),
    :"schema".message_enqueue(text, text[], integer[], float8[], timestamptz[], text[], text[]),
    :"schema".message_archive(bigint[], uuid[], text[], text[], text[]),
    :"schema".message_delete(bigint[], uuid[]),
    :"schema".message_extend(bigint[], uuid[], float8),
    :"schema".message_release(bigint[], uuid[], float8[], text[], boolean[]),
    :"schema".queue_delete(text),
    :"schema".queue_lock(text);
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
