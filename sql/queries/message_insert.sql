-- message_insert: enqueue messages that have no dedup key (the common case) in
-- one statement, and send one NOTIFY (a wake-up hint for idle workers;
-- delivered on commit), as message_enqueue does.
--   $1 queue text
--   $2 payloads     jsonb        a JSON array of the payloads (one text for the
--                                whole batch: no per-element array quoting)
--   $3 priority     integer      the same for every message of the call
--   $4 delay        float8       seconds; NULL for none
--   $5 available_at timestamptz  NULL for none (delay adds to it)
--   $6 headers      text         JSON text; NULL for {}
-- Without dedup keys nothing can conflict, so this skips message_enqueue's
-- ON CONFLICT arbiter and its matching of results to inputs, and returns only
-- what the client does not know already. Ids are drawn as the ordered rows
-- are inserted, so id order is input order (the client sorts by id).
-- The NOTIFY is an uncorrelated subquery of RETURNING: evaluated once, for
-- the first row (a CTE and a final sort cost ~10% more server time).
INSERT INTO :"schema".messages (queue, payload, priority, visible_at, headers)
SELECT $1, p.payload, $3::integer,
       greatest(now(), coalesce($5::timestamptz, now())
                       + make_interval(secs => coalesce($4::float8, 0))),
       coalesce($6::text::jsonb, '{}'::jsonb)
FROM jsonb_array_elements($2::text::jsonb) WITH ORDINALITY AS p(payload, ord)
ORDER BY p.ord
RETURNING id, enqueued_at, visible_at AS visible_until,
          (SELECT pg_notify(:'schema' || '.enqueue', $1)) IS NULL AS notified
