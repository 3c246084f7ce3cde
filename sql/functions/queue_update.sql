-- queue_update: change queue $1's flow-control limits (docs/flow-control.md).
-- Each limit comes with a flag saying whether to change it; a changed limit
-- set to NULL is removed:
--   $2 set concurrency_limit?  $3 concurrency_limit
--   $4 set group_concurrency?  $5 group_concurrency
--   $6 set rate_limit?         $7 rate_count, $8 rate_period (seconds), $9 per group
-- Takes effect at the next dequeue. When the queue now has limits, the
-- messages already leased are counted (flow_leases), so a limit set on a busy
-- queue holds at once; without limits that bookkeeping is dropped.
-- Returns the queue's settings (queue_get's columns), no row when missing.
CREATE OR REPLACE FUNCTION :"schema".queue_update(text, boolean, integer, boolean, integer, boolean, integer, float8, boolean)
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
DECLARE
    q queues;
BEGIN
    PERFORM flow_check(CASE WHEN $2 THEN $3 END, CASE WHEN $4 THEN $5 END,
                       CASE WHEN $6 THEN $7 END, CASE WHEN $6 THEN $8 END, CASE WHEN $6 THEN $9 END);
    UPDATE queues u
    SET concurrency_limit = CASE WHEN $2 THEN $3 ELSE u.concurrency_limit END,
        group_concurrency = CASE WHEN $4 THEN $5 ELSE u.group_concurrency END,
        rate_count = CASE WHEN $6 THEN $7 ELSE u.rate_count END,
        rate_period = CASE WHEN $6 THEN $8 ELSE u.rate_period END,
        rate_per_group = CASE WHEN $6 THEN coalesce($9, false) ELSE u.rate_per_group END
    WHERE u.name = $1
    RETURNING u.* INTO q;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- Serialise with the queue's limited dequeues while the held set changes.
    PERFORM pg_advisory_xact_lock(hashtextextended('pgqrs.flow:' || current_schema() || '.' || q.name, 0));
    IF q.concurrency_limit IS NULL AND q.group_concurrency IS NULL AND q.rate_count IS NULL THEN
        DELETE FROM flow_leases f WHERE f.queue = q.name;
    ELSE
        INSERT INTO flow_leases (queue, id, group_key, lease)
        SELECT m.queue, m.id, m.group_key, m.lease
        FROM messages m
        WHERE m.queue = q.name AND m.lease IS NOT NULL AND m.visible_at > now()
        ON CONFLICT ON CONSTRAINT flow_leases_pkey DO UPDATE SET lease = EXCLUDED.lease;
    END IF;
    IF q.rate_count IS NULL OR NOT q.rate_per_group THEN
        DELETE FROM flow_buckets b WHERE b.queue = q.name AND b.group_key <> '';
    END IF;
    IF q.rate_count IS NULL OR q.rate_per_group THEN
        DELETE FROM flow_buckets b WHERE b.queue = q.name AND b.group_key = '';
    END IF;
    RETURN QUERY
    SELECT * FROM queue_get($1);
END
$function$;

REVOKE ALL ON FUNCTION :"schema".queue_update(text, boolean, integer, boolean, integer, boolean, integer, float8, boolean) FROM PUBLIC;
