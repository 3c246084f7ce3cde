-- schedule_set_paused: pause ($2 true) or resume ($2 false) schedule $1. A
-- paused schedule fires nothing; resuming plans afresh (next_slot NULL: the
-- first slot after the next tick), so the slots of the pause never fire,
-- whatever `missed` says. No row when there is no such schedule.
CREATE OR REPLACE FUNCTION :"schema".schedule_set_paused(text, boolean)
RETURNS TABLE (name text, paused boolean)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = 'schedule name and paused must not be NULL';
    END IF;
    RETURN QUERY
    UPDATE schedules s
    SET paused = $2,
        next_slot = CASE WHEN s.paused AND NOT $2 THEN NULL ELSE s.next_slot END,
        updated_at = now()
    WHERE s.name = $1
    RETURNING s.name, s.paused;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".schedule_set_paused(text, boolean) FROM PUBLIC;
