-- queue_delete: delete queue $1 and its waiting and in-flight messages (its
-- archive stays for audit). Returns the name, or no row when there is no such
-- queue; its flow-control leases and buckets go too. Two statements, so that the second one's snapshot sees the messages
-- of every enqueue the first one waited for.
CREATE OR REPLACE FUNCTION :"schema".queue_delete(text)
RETURNS TABLE (name text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY DELETE FROM queues q WHERE q.name = $1 RETURNING q.name;
    IF FOUND THEN
        DELETE FROM messages m WHERE m.queue = $1;
        -- Flow control's bookkeeping (docs/flow-control.md) goes with the queue.
        DELETE FROM flow_leases f WHERE f.queue = $1;
        DELETE FROM flow_buckets b WHERE b.queue = $1;
    END IF;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_delete(text) FROM PUBLIC;
