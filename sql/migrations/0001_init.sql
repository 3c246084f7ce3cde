-- pgqrs schema, version 1: the tables and indexes.
--
-- The server functions are not here: each one is a file of sql/functions/,
-- (re)created by install when its checksum changes (see sql/README.md).
--
-- Placeholders, substituted by both clients before execution (they follow
-- psql's variable syntax, so `psql -v schema=pgqrs -f` runs this file too):
--   :"schema"  the schema, as a quoted identifier
--   :'schema'  the schema, as a string literal
--
-- Queue names are data (validated by a CHECK), never identifiers.

CREATE TABLE :"schema".queues (
    name               text        PRIMARY KEY,
    visibility_timeout interval    NOT NULL DEFAULT interval '30 seconds',
    max_attempts       integer     NOT NULL DEFAULT 5,
    paused             boolean     NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queues_name_valid CHECK (name ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    CONSTRAINT queues_visibility_timeout_positive CHECK (visibility_timeout > interval '0'),
    CONSTRAINT queues_max_attempts_positive CHECK (max_attempts >= 1)
);

-- Waiting, delayed and in-flight messages. A message is *leased* while
-- `lease` is set and `visible_at` is in the future; once `visible_at` passes
-- it is ready again, and the next dequeue replaces the lease (fencing out the
-- previous holder).
-- `queue` has no foreign key on purpose: a foreign key checks and locks the
-- queue once per inserted row; the enqueue functions take that same KEY SHARE
-- lock once per statement (queue_lock) and queue_delete deletes the queue's
-- messages itself.
CREATE TABLE :"schema".messages (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text        NOT NULL,
    payload     jsonb       NOT NULL,
    priority    integer     NOT NULL DEFAULT 0,
    visible_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer     NOT NULL DEFAULT 0,
    lease       uuid,
    leased_by   bigint,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    dequeued_at timestamptz,
    dedup_key   text,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    last_error  jsonb
) WITH (fillfactor = 80);

-- The dequeue walks this index in delivery order and stops after LIMIT rows.
CREATE INDEX messages_dequeue_idx
    ON :"schema".messages (queue, priority DESC, id);

-- Idempotent enqueue: one waiting or in-flight message per (queue, dedup_key).
CREATE UNIQUE INDEX messages_dedup_key_idx
    ON :"schema".messages (queue, dedup_key)
    WHERE dedup_key IS NOT NULL;

-- Messages are short-lived rows: vacuum them early and often.
ALTER TABLE :"schema".messages SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);

-- Completed, dead (and other finished) messages, kept for audit and
-- retention. `id` is the message's id.
CREATE TABLE :"schema".archive (
    id          bigint      PRIMARY KEY,
    queue       text        NOT NULL,
    payload     jsonb       NOT NULL,
    priority    integer     NOT NULL,
    attempts    integer     NOT NULL,
    enqueued_at timestamptz NOT NULL,
    dequeued_at timestamptz,
    dedup_key   text,
    headers     jsonb       NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    status      text        NOT NULL,
    result      jsonb,
    error       jsonb
);

CREATE INDEX archive_queue_status_idx ON :"schema".archive (queue, status, archived_at);
CREATE INDEX archive_archived_at_idx ON :"schema".archive (archived_at);

CREATE TABLE :"schema".workers (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hostname     text        NOT NULL,
    pid          integer     NOT NULL,
    queues       text[]      NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz,
    status       text        NOT NULL DEFAULT 'running',
    -- Whether the worker LISTENs for enqueues: enqueue statements NOTIFY
    -- only when a running worker that listens serves their queue (queue_lock).
    listening    boolean     NOT NULL DEFAULT true,
    CONSTRAINT workers_status_valid CHECK (status IN ('running', 'stopping', 'stopped', 'dead'))
);

CREATE INDEX workers_status_heartbeat_idx ON :"schema".workers (status, heartbeat_at);

-- The running, listening workers, which every enqueue statement looks for:
-- stopped and dead rows (kept until pruned) stay out of that search.
CREATE INDEX workers_listening_idx ON :"schema".workers (id)
    WHERE status = 'running' AND listening;
