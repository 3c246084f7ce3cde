-- dashboard_estimate_delayed: $1 queue. The planner's estimate (nothing is
-- executed), as dashboard_estimate_ready.
CREATE OR REPLACE FUNCTION :"schema".dashboard_estimate_delayed(text)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
DECLARE
    plan json;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = 'queue must not be NULL';
    END IF;
    -- A constant statement; the arguments are parameters, never SQL text.
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM messages WHERE queue = $1 AND visible_at > now() AND lease IS NULL'
        USING $1 INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::float8::bigint;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_estimate_delayed(text) FROM PUBLIC;
