-- dashboard_message_retry: make waiting message $1 visible now (a delayed one,
-- or one waiting for its retry backoff). A message leased by a consumer is left
-- alone: making it visible would deliver it twice. Returns the id when done.
CREATE OR REPLACE FUNCTION :"schema".dashboard_message_retry(bigint)
RETURNS TABLE (id bigint)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
DECLARE
    done bigint;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = 'message id must not be NULL';
    END IF;
    UPDATE messages m SET visible_at = now()
    WHERE m.id = $1 AND m.lease IS NULL AND m.visible_at > now()
    RETURNING m.id INTO done;
    IF done IS NOT NULL THEN
        id := done;
        RETURN NEXT;
    END IF;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_message_retry(bigint) FROM PUBLIC;
