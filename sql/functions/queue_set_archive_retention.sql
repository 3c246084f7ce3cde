-- queue_set_archive_retention: keep queue $1's archived messages for $2
-- seconds (NULL: for ever). Returns the queue's name, or no row when there is
-- no such queue.
CREATE OR REPLACE FUNCTION :"schema".queue_set_archive_retention(text, float8)
RETURNS TABLE (name text, archive_retention float8)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $2 IS NOT NULL AND NOT ($2 > 0 AND $2 <= 3155760000) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('archive_retention must be from 0 (excluded) to 3155760000 seconds or None, got %s', $2);
    END IF;
    RETURN QUERY
    UPDATE queues q SET archive_retention = make_interval(secs => $2)
    WHERE q.name = $1
    RETURNING q.name, extract(epoch FROM q.archive_retention)::float8;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_set_archive_retention(text, float8) FROM PUBLIC;
