-- queue_create: create queue $1 with visibility timeout $2 (seconds), max
-- attempts $3 and its flow-control limits (docs/flow-control.md), each NULL
-- for none: $4 concurrency_limit, $5 group_concurrency, $6 rate_count per
-- $7 rate_period seconds, $8 the rate applies per group. Returns the new
-- queue, or no row when it already exists.
-- An invalid name fails the queues_name_valid CHECK (InvalidQueueName).
CREATE OR REPLACE FUNCTION :"schema".queue_create(text, float8, integer, integer, integer, integer, float8, boolean)
RETURNS TABLE (
    name text,
    visibility_timeout float8,
    max_attempts integer,
    paused boolean,
    created_at timestamptz,
    concurrency_limit integer,
    group_concurrency integer,
    rate_count integer,
    rate_period float8,
    rate_per_group boolean
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
    PERFORM flow_check($4, $5, $6, $7, $8);
    RETURN QUERY
    INSERT INTO queues AS q (name, visibility_timeout, max_attempts, concurrency_limit,
                             group_concurrency, rate_count, rate_period, rate_per_group)
    VALUES ($1, make_interval(secs => $2), $3, $4, $5, $6, $7, coalesce($8, false))
    ON CONFLICT (name) DO NOTHING
    RETURNING q.name, extract(epoch FROM q.visibility_timeout)::float8, q.max_attempts, q.paused,
              q.created_at, q.concurrency_limit, q.group_concurrency, q.rate_count, q.rate_period,
              q.rate_per_group;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_create(text, float8, integer, integer, integer, integer, float8, boolean) FROM PUBLIC;
