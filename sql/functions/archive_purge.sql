-- archive_purge: delete archived messages archived more than $1 seconds ago,
-- of queue $2 (NULL for all) with status $3 (NULL for all). Returns how many.
CREATE OR REPLACE FUNCTION :"schema".archive_purge(float8, text, text)
RETURNS TABLE (purged bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR NOT ($1 >= 0 AND $1 <= 3155760000) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('older_than must be from 0 to 3155760000 seconds, got %s',
                             coalesce($1::text, 'NULL'));
    END IF;
    RETURN QUERY
    WITH gone AS (
        DELETE FROM archive a
        WHERE a.archived_at < now() - make_interval(secs => $1)
          AND ($2 IS NULL OR a.queue = $2)
          AND ($3 IS NULL OR a.status = $3)
        RETURNING 1
    )
    SELECT count(*) FROM gone;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".archive_purge(float8, text, text) FROM PUBLIC;
