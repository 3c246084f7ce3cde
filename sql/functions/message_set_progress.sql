-- message_set_progress: record progress $3 (a JSON text) of leased message $1,
-- fenced by its lease $2. Returns one row: outcome 'ok', 'cancelled' (recorded,
-- but a cancel was requested: the handler should stop), 'lease_lost' (the row
-- is there under another lease) or 'not_found'.
CREATE OR REPLACE FUNCTION :"schema".message_set_progress(bigint, uuid, text)
RETURNS TABLE (
    id bigint,
    outcome text,
    visible_until timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET plan_cache_mode = force_generic_plan
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
DECLARE
    cancel timestamptz;
    until timestamptz;
BEGIN
    IF $1 IS NULL OR $2 IS NULL OR $3 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = 'message_set_progress needs a message id, its lease and a JSON value';
    END IF;
    UPDATE messages m SET progress = $3::jsonb
    WHERE m.id = $1 AND m.lease = $2
    RETURNING m.cancel_requested_at, m.visible_at INTO cancel, until;
    IF FOUND THEN
        RETURN QUERY SELECT $1, CASE WHEN cancel IS NULL THEN 'ok' ELSE 'cancelled' END, until;
    ELSIF EXISTS (SELECT 1 FROM messages m WHERE m.id = $1) THEN
        RETURN QUERY SELECT $1, 'lease_lost'::text, NULL::timestamptz;
    ELSE
        RETURN QUERY SELECT $1, 'not_found'::text, NULL::timestamptz;
    END IF;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".message_set_progress(bigint, uuid, text) FROM PUBLIC;
