-- schedule_delete: delete schedule $1 and its slot records (messages it
-- already enqueued stay). No row when there is no such schedule.
CREATE OR REPLACE FUNCTION :"schema".schedule_delete(text)
RETURNS TABLE (name text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = 'schedule name must not be NULL';
    END IF;
    DELETE FROM schedule_slots sl WHERE sl.schedule = $1;
    RETURN QUERY DELETE FROM schedules s WHERE s.name = $1 RETURNING s.name;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".schedule_delete(text) FROM PUBLIC;
