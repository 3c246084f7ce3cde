-- role_grant: the GRANT statements giving role $1 the privileges of a
-- producer ($2), a consumer ($3), an admin ($4) and/or a read-only monitor
-- ($5) on this schema. The client runs them in one transaction. Built with
-- format('%I'), so the role name is always a quoted identifier, never SQL.
-- No row when the role does not exist.
--
-- A role acts only through the server functions (SECURITY DEFINER, owned by
-- the installing role, search_path pinned, EXECUTE revoked from PUBLIC):
-- it gets USAGE on the schema and EXECUTE on the functions of its job, and no
-- privilege on any table, so it cannot read, write or lock a row except as a
-- function does. The one exception: admin and read-only may SELECT the two
-- ledgers (versions and checksums, no message data), for verify.
-- Installing and migrating (CREATE in the schema) stays with the owner.
--   producer:  enqueue (message_insert, message_enqueue); wait for a result
--              (archive_get, archive_wait: a producer waits for what it enqueued).
--   consumer:  dequeue, settle (archive, delete, extend, release, fail), read
--              a queue's settings, register, heartbeat, stop and reap workers;
--              declare schedules and fire them (a worker's ticks); record
--              progress, poll for cancellations, prune archives by their
--              retention.
--   read-only: list queues, their settings and stats, peek messages (lease
--              tokens hidden), list the archive, workers and schedules; the web
--              dashboard's reads (dashboard_*).
--   admin:     all of the above, plus create, pause, purge and delete queues,
--              pause, resume and delete schedules,
--              purge and redrive the archive, cancel messages, set a queue's
--              archive retention; the dashboard's actions (retry, remove, cancel
--              a message, remove an archived one).
WITH r AS (
    SELECT rolname FROM pg_roles WHERE rolname = $1::text
),
kinds (kind, wanted) AS (
    VALUES ('producer', $2::boolean OR $4::boolean),
           ('consumer', $3::boolean OR $4::boolean),
           ('read_only', $5::boolean OR $4::boolean),
           ('admin', $4::boolean)
),
jobs (kind, fn) AS (
    VALUES ('producer', 'message_insert'), ('producer', 'message_enqueue'),
           ('producer', 'archive_get'), ('producer', 'archive_wait'),
           ('consumer', 'message_set_progress'), ('consumer', 'message_cancelled'),
           ('consumer', 'archive_prune'),
           ('read_only', 'archive_get'), ('read_only', 'archive_wait'),
           ('admin', 'message_cancel'), ('admin', 'queue_set_archive_retention'),
           ('consumer', 'message_dequeue'), ('consumer', 'message_archive'),
           ('consumer', 'message_delete'), ('consumer', 'message_extend'),
           ('consumer', 'message_release'), ('consumer', 'message_fail'),
           ('consumer', 'queue_get'), ('consumer', 'worker_register'),
           ('consumer', 'worker_alive'),
           ('consumer', 'worker_stop'), ('consumer', 'worker_reap'),
           ('consumer', 'schedule_upsert'), ('consumer', 'schedule_due'),
           ('consumer', 'schedule_fire'), ('read_only', 'schedule_list'),
           ('read_only', 'queue_get'), ('read_only', 'queue_list'),
           ('read_only', 'queue_stats'), ('read_only', 'message_peek'),
           ('read_only', 'archive_list'), ('read_only', 'worker_list'),
           ('read_only', 'metrics_scrape'),
           ('read_only', 'dashboard_archive_counts'), ('read_only', 'dashboard_archive_search'),
           ('read_only', 'dashboard_estimate_archived'), ('read_only', 'dashboard_estimate_delayed'),
           ('read_only', 'dashboard_estimate_in_flight'), ('read_only', 'dashboard_estimate_ready'),
           ('read_only', 'dashboard_message'), ('read_only', 'dashboard_messages'),
           ('read_only', 'dashboard_oldest_ready'), ('read_only', 'dashboard_queues'),
           ('read_only', 'dashboard_running'), ('read_only', 'dashboard_schedules'),
           ('read_only', 'dashboard_series_archived'),
           ('read_only', 'dashboard_series_enqueued_archive'),
           ('read_only', 'dashboard_series_enqueued_messages'), ('read_only', 'dashboard_workers'),
           ('admin', 'queue_create'), ('admin', 'queue_delete'),
           ('admin', 'queue_purge'), ('admin', 'queue_set_paused'), ('admin', 'queue_update'),
           ('admin', 'archive_purge'), ('admin', 'archive_redrive'),
           ('admin', 'schedule_delete'), ('admin', 'schedule_set_paused'),
           ('admin', 'dashboard_message_retry'), ('admin', 'dashboard_message_remove'),
           ('admin', 'dashboard_archive_remove')
),
granted AS (
    -- Each function once, with its current signature, in a stable order.
    SELECT DISTINCT format('%I.%I(%s)', :'schema', p.proname,
                           pg_get_function_identity_arguments(p.oid)) AS fn
    FROM kinds k
    JOIN jobs j ON j.kind = k.kind
    JOIN pg_proc p ON p.proname = j.fn AND p.pronamespace = to_regnamespace(:'schema')
    WHERE k.wanted
),
wanted (ord, stmt) AS (
    SELECT 1, format('GRANT USAGE ON SCHEMA %I TO %I', :'schema', r.rolname) FROM r
    UNION ALL
    SELECT 2, format('GRANT EXECUTE ON FUNCTION %s TO %I', string_agg(g.fn, ', ' ORDER BY g.fn),
                     r.rolname)
    FROM r CROSS JOIN granted g
    GROUP BY r.rolname
    UNION ALL
    SELECT 3, format('GRANT SELECT ON %1$I.schema_migrations, %1$I.schema_functions TO %2$I',
                     :'schema', r.rolname)
    FROM r
    WHERE $4::boolean OR $5::boolean
)
SELECT stmt AS statement FROM wanted ORDER BY ord
