-- message_release: give leased messages back to the queue, fenced by lease.
--   $1 ids bigint[], $2 leases uuid[], $3 delays float8[] (seconds),
--   $4 errors text[] (JSON texts or NULL: recorded as last_error)
-- The message becomes visible again after its delay; its attempt count stays
-- (it was counted at dequeue). One result row per input, as message_archive.
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::float8[], $4::text[]) AS t(id, lease, delay, error)
),
released AS (
    UPDATE :"schema".messages m
    SET lease = NULL,
        leased_by = NULL,
        visible_at = now() + make_interval(secs => coalesce(i.delay, 0)),
        last_error = coalesce(i.error::jsonb, m.last_error)
    FROM input i
    WHERE m.id = i.id AND m.lease = i.lease
    RETURNING m.id, m.visible_at
)
SELECT i.id,
       CASE WHEN r.id IS NOT NULL THEN 'ok'
            WHEN EXISTS (SELECT 1 FROM :"schema".messages m WHERE m.id = i.id) THEN 'lease_lost'
            ELSE 'not_found' END AS outcome,
       r.visible_at AS visible_until
FROM input i LEFT JOIN released r ON r.id = i.id
