-- message_cancelled: the messages worker $1 holds whose cancellation was
-- requested (id and lease): the worker's cancel poll, next to its heartbeat,
-- so a running handler learns of a cancel within a heartbeat interval. An
-- index probe (messages_cancel_requested_idx holds only marked rows).
CREATE OR REPLACE FUNCTION :"schema".message_cancelled(bigint)
RETURNS TABLE (
    id bigint,
    lease uuid
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = 'worker id must not be NULL';
    END IF;
    RETURN QUERY
    SELECT m.id, m.lease FROM messages m
    WHERE m.leased_by = $1 AND m.cancel_requested_at IS NOT NULL;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_cancelled(bigint) FROM PUBLIC;
