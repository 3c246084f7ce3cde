-- dashboard_archive_remove: delete archived message $1 (an operator's decision).
-- Returns the id, no row when there was none.
CREATE OR REPLACE FUNCTION :"schema".dashboard_archive_remove(bigint)
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
    DELETE FROM archive a WHERE a.id = $1 RETURNING a.id INTO done;
    IF done IS NOT NULL THEN
        id := done;
        RETURN NEXT;
    END IF;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".dashboard_archive_remove(bigint) FROM PUBLIC;
