-- uninstall: drops what pgqrs created in the schema, and nothing else.
-- Only when the migration ledger says pgqrs is installed there (otherwise it
-- drops nothing: a schema such as public may hold an application's own
-- "messages" table). Then: the functions the function ledger names, with
-- whatever signature they have now; the tables the migrations create and the
-- two ledgers; and the schema itself when nothing else is left in it (never
-- public). Every DROP is RESTRICT, never CASCADE: a user object that depends
-- on a pgqrs object (a view on the archive, say) makes the whole uninstall
-- fail and roll back, naming it, instead of being dropped with it.
-- Keep the table list in step with the migrations.
DO $pgqrs$
DECLARE
    f regprocedure;
    t text;
BEGIN
    IF to_regclass(format('%I.schema_migrations', :'schema')) IS NULL THEN
        RETURN;
    END IF;
    -- The archive's trigger first: its function is dropped below, RESTRICT.
    IF to_regclass(format('%I.archive', :'schema')) IS NOT NULL THEN
        EXECUTE format('DROP TRIGGER IF EXISTS archive_notify ON %I.archive', :'schema');
    END IF;
    IF to_regclass(format('%I.schema_functions', :'schema')) IS NOT NULL THEN
        FOR f IN EXECUTE format(
            'SELECT p.oid::regprocedure FROM pg_proc p JOIN %I.schema_functions s ON s.name = p.proname '
            'WHERE p.pronamespace = to_regnamespace(%L)', :'schema', :'schema')
        LOOP
            EXECUTE format('DROP FUNCTION %s RESTRICT', f);
        END LOOP;
    END IF;
    FOREACH t IN ARRAY ARRAY['schedule_slots', 'schedules', 'flow_leases', 'flow_buckets', 'messages', 'archive', 'archive_waiters', 'workers', 'queues',
                             'schema_functions', 'schema_migrations'] LOOP
        IF to_regclass(format('%I.%I', :'schema', t)) IS NOT NULL THEN
            EXECUTE format('DROP TABLE %I.%I RESTRICT', :'schema', t);
        END IF;
    END LOOP;
    IF :'schema' <> 'public' THEN
        BEGIN
            EXECUTE format('DROP SCHEMA %I RESTRICT', :'schema');
        EXCEPTION WHEN dependent_objects_still_exist THEN
            NULL;  -- something of someone else's lives there: the schema stays
        END;
    END IF;
END
$pgqrs$;
