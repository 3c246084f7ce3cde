-- archive_prune: enforce queue $1's archive_retention: delete at most $2 of
-- its archived messages older than the retention, oldest first. Returns how
-- many were deleted, or NULL when another session is pruning the queue right
-- now (at most one pruner per queue: a transaction-level advisory lock taken
-- with pg_try_advisory_xact_lock inside this one statement, so no lock is
-- held across statements and nobody waits) or the queue keeps its archive
-- (no retention, or no such queue). Workers call it periodically and again
-- while a call deleted $2 rows (small batches: short transactions, no bloat
-- burst).
-- Cheap when there is nothing to delete: min(archived_at) of the queue is one
-- probe of archive_queue_archived_at_idx (queue, archived_at) (2 buffers). The
-- rows are then found by a row comparison on (queue, archived_at), which only
-- that index serves: a plain "queue = $1 AND archived_at < cutoff ORDER BY
-- archived_at LIMIT" was planned as a walk of archive_archived_at_idx through
-- other queues' old rows, or as a sequential scan (35-57 ms per call with
-- nothing to delete among 100,000 rows, measured: bench/lifecycle_bench.py).
CREATE OR REPLACE FUNCTION :"schema".archive_prune(text, integer)
RETURNS TABLE (pruned bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
#variable_conflict use_column
DECLARE
    keep interval;
    cutoff timestamptz;
    oldest timestamptz;
BEGIN
    IF $2 IS NULL OR $2 < 1 OR $2 > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = 'PQ001',
            MESSAGE = format('batch must be from 1 to 100000, got %s', coalesce($2::text, 'NULL'));
    END IF;
    SELECT q.archive_retention INTO keep FROM queues q WHERE q.name = $1;
    -- The lock key: this function's purpose and the queue, as two int4s.
    IF keep IS NULL
       OR NOT pg_try_advisory_xact_lock(hashtext('pgqrs.archive_prune'), hashtext(current_schema() || '.' || $1)) THEN
        RETURN QUERY SELECT NULL::bigint;
        RETURN;
    END IF;
    cutoff := now() - keep;
    SELECT min(a.archived_at) INTO oldest FROM archive a WHERE a.queue = $1;
    IF oldest IS NULL OR oldest >= cutoff THEN
        RETURN QUERY SELECT 0::bigint;
        RETURN;
    END IF;
    RETURN QUERY
    WITH gone AS (
        DELETE FROM archive a
        WHERE a.id = ANY (ARRAY(
            SELECT o.id FROM archive o
            WHERE (o.queue, o.archived_at) >= ($1, oldest)
              AND (o.queue, o.archived_at) < ($1, cutoff)
            ORDER BY o.queue, o.archived_at
            LIMIT $2))
        RETURNING 1
    )
    SELECT count(*) FROM gone;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".archive_prune(text, integer) FROM PUBLIC;
