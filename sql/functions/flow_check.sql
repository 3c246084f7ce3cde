-- flow_check: raise PQ001 naming the value when flow-control limits are
-- invalid: $1 concurrency_limit, $2 group_concurrency, $3 rate_count per $4
-- rate_period seconds, $5 per group (each NULL: none). Internal, called by
-- queue_create and queue_update before they write anything.
CREATE OR REPLACE FUNCTION :"schema".flow_check(integer, integer, integer, float8, boolean)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
BEGIN
    IF $1 IS NOT NULL AND $1 < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('concurrency_limit must be >= 1 (or None for no limit), got %s', $1);
    END IF;
    IF $2 IS NOT NULL AND $2 < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('group_concurrency must be >= 1 (or None for no limit), got %s', $2);
    END IF;
    IF ($3 IS NULL) <> ($4 IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('rate_limit needs both a count and a period, got %s per %s seconds', coalesce($3::text, 'NULL'), coalesce($4::text, 'NULL'));
    END IF;
    IF $3 IS NOT NULL AND $3 < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('rate_limit count must be >= 1, got %s', $3);
    END IF;
    IF $4 IS NOT NULL AND NOT ($4 > 0 AND $4 <= 31622400) THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = format('rate_limit period must be from 0 (excluded) to 31622400 seconds (a year), got %s', $4);
    END IF;
    IF coalesce($5, false) AND $3 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001', MESSAGE = 'rate_limit per group needs a rate_limit';
    END IF;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".flow_check(integer, integer, integer, float8, boolean) FROM PUBLIC;
