-- archive_notify: the archive's statement-level AFTER INSERT trigger: when
-- someone waits (Admin.wait registered the id in archive_waiters) for a
-- message this statement archived, one NOTIFY on the schema's archive channel
-- with those ids (comma-separated). Every path that archives (message_archive,
-- message_fail, message_dequeue's dead and cancelled rows, message_cancel)
-- inserts into the archive, so one trigger covers them all.
-- Why only for waiters: PostgreSQL serialises the commits of notifying
-- transactions; archiving is the hottest write. While nobody waits the cost is
-- one probe of the (empty) archive_waiters table per archiving statement.
-- NOTIFY is a hint; the waiter's poll (archive_get) is the guarantee.
CREATE OR REPLACE FUNCTION :"schema".archive_notify()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
DECLARE
    ids text;
BEGIN
    IF EXISTS (SELECT 1 FROM archive_waiters) THEN
        SELECT string_agg(DISTINCT n.id::text, ',') INTO ids
        FROM archived_rows n
        WHERE n.id IN (SELECT w.id FROM archive_waiters w);
        IF ids IS NOT NULL THEN
            PERFORM pg_notify(current_schema() || '.archived', ids);
        END IF;
    END IF;
    RETURN NULL;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".archive_notify() FROM PUBLIC;

-- The trigger is (re)created with its function (a migration cannot name a
-- function: migrations run before the function files).
DROP TRIGGER IF EXISTS archive_notify ON :"schema".archive;
CREATE TRIGGER archive_notify
    AFTER INSERT ON :"schema".archive
    REFERENCING NEW TABLE AS archived_rows
    FOR EACH STATEMENT EXECUTE FUNCTION :"schema".archive_notify();
