-- queue_create: create queue $1 with visibility timeout $2 (seconds) and
-- max attempts $3. Returns the new queue, or no row when it already exists.
-- An invalid name fails the queues_name_valid CHECK (InvalidQueueName).
CREATE OR REPLACE FUNCTION :"schema".queue_create(text, float8, integer)
RETURNS TABLE (
    name text,
    visibility_timeout float8,
    max_attempts integer,
    paused boolean,
    created_at timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
BEGIN
    IF $2 IS NULL OR NOT ($2 > 0 AND $2 <= 3155760000) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('visibility_timeout must be from 0 (excluded) to 3155760000 seconds, got %s',
                                                  coalesce($2::text, 'NULL'));
    END IF;
    IF $3 IS NULL OR $3 < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('max_attempts must be >= 1, got %s', coalesce($3::text, 'NULL'));
    END IF;
    RETURN QUERY
    INSERT INTO queues AS q (name, visibility_timeout, max_attempts)
    VALUES ($1, make_interval(secs => $2), $3)
    ON CONFLICT (name) DO NOTHING
    RETURNING q.name, extract(epoch FROM q.visibility_timeout)::float8, q.max_attempts, q.paused,
              q.created_at;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_create(text, float8, integer) FROM PUBLIC;
