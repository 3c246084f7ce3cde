-- dashboard_estimate_archived: $1 queue, $2 status. The planner's row estimate
-- (nothing is executed), for (queue, status) pairs too big to count. VOLATILE
-- only because PostgreSQL allows EXPLAIN nowhere else.
CREATE OR REPLACE FUNCTION :"schema".dashboard_estimate_archived(text, text)
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
    IF $2 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = 'status must not be NULL';
    END IF;
    -- A constant statement; the arguments are parameters, never SQL text.
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM archive WHERE queue = $1 AND status = $2'
        USING $1, $2 INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::float8::bigint;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_estimate_archived(text, text) FROM PUBLIC;
