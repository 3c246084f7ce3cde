-- queue_lock: the queue's name, with its row locked FOR KEY SHARE, or NULL
-- when there is no such queue; and, when a running worker that listens serves
-- the queue, a NOTIFY on the schema's enqueue channel with the queue's name
-- (delivered at commit, dropped on rollback). Only enqueue statements
-- (message_insert, message_enqueue) call it; archive_redrive takes the same
-- lock itself.
--
-- Why a lock and not a foreign key messages.queue -> queues.name: a foreign
-- key checks (and locks) the queue once per inserted row; this takes the same
-- KEY SHARE lock once per statement (0.82 -> 0.47 ms of server time for a
-- 100-message insert, measured). queue_delete must wait for every enqueue
-- holding it, and an enqueue after the delete finds no row and inserts nothing.
--
-- Why NOTIFY only when someone listens: PostgreSQL serializes the commits of
-- notifying transactions, so a NOTIFY per enqueue halved the throughput of
-- concurrent producers while no worker was listening (workers behind a
-- transaction-mode pooler poll instead). NOTIFY is a hint; the poll is the
-- guarantee.
--
-- SECURITY DEFINER because a row lock needs UPDATE privilege on queues, which
-- a producer must not have, and producers cannot read the workers table. Only
-- roles given it by Admin.grant (producer, admin) may call it.
CREATE OR REPLACE FUNCTION :"schema".queue_lock(text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
DECLARE
    locked text;
BEGIN
    SELECT q.name INTO locked FROM queues q WHERE q.name = $1 FOR KEY SHARE;
    IF locked IS NOT NULL AND EXISTS (
        SELECT 1 FROM workers w
        WHERE w.status = 'running' AND w.listening AND $1 = ANY (w.queues)
    ) THEN
        PERFORM pg_notify(current_schema() || '.enqueue', $1);
    END IF;
    RETURN locked;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_lock(text) FROM PUBLIC;
