-- Flow control (docs/flow-control.md): queue-wide and per-group concurrency
-- limits, message groups, and token-bucket rate limits, all enforced inside
-- message_dequeue.

ALTER TABLE :"schema".queues
    ADD COLUMN concurrency_limit integer,
    ADD COLUMN group_concurrency integer,
    ADD COLUMN rate_count        integer,
    ADD COLUMN rate_period       float8,
    ADD COLUMN rate_per_group    boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT queues_concurrency_limit_positive CHECK (concurrency_limit > 0),
    ADD CONSTRAINT queues_group_concurrency_positive CHECK (group_concurrency > 0),
    ADD CONSTRAINT queues_rate_valid CHECK (
        (rate_count IS NULL AND rate_period IS NULL AND NOT rate_per_group)
        OR (rate_count > 0 AND rate_period > 0 AND rate_period <= 31622400));

-- A message's group (NULL: none). The archive keeps it.
ALTER TABLE :"schema".messages
    ADD COLUMN group_key text,
    ADD CONSTRAINT messages_group_key_valid CHECK (length(group_key) BETWEEN 1 AND 128);
ALTER TABLE :"schema".archive ADD COLUMN group_key text;

-- The limited dequeue walks one group at a time in delivery order. Partial:
-- messages without a group (every queue without groups) pay no index entry.
CREATE INDEX messages_group_idx
    ON :"schema".messages (queue, group_key, priority DESC, id)
    WHERE group_key IS NOT NULL;

-- The leases taken by the limited dequeue of a limited queue: what it counts
-- as "held". A row counts only while its message still carries that lease and
-- the lease has not expired (checked against messages by primary key), so
-- archive, release, delete and expiry need not touch this table; the limited
-- dequeue prunes the rows that no longer count. Queues without limits never
-- write here.
CREATE TABLE :"schema".flow_leases (
    queue     text   NOT NULL,
    id        bigint NOT NULL,
    group_key text,
    lease     uuid   NOT NULL,
    PRIMARY KEY (queue, id)
);
CREATE INDEX flow_leases_group_idx ON :"schema".flow_leases (queue, group_key);

-- Token buckets of rate-limited queues: one per queue (group_key '') or, for
-- a per-group rate, one per group. Refilled from now() by message_dequeue,
-- which writes a bucket only when it takes tokens from it.
CREATE TABLE :"schema".flow_buckets (
    queue      text        NOT NULL,
    group_key  text        NOT NULL,
    tokens     float8      NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (queue, group_key)
);

-- Result columns change (limits, groups, retry_after): see sql/README.md.
DROP FUNCTION IF EXISTS :"schema".message_dequeue(text, bigint, float8, bigint);
DROP FUNCTION IF EXISTS :"schema".message_insert(text, text, integer, float8, timestamptz, text);
DROP FUNCTION IF EXISTS :"schema".message_enqueue(text, text[], integer[], float8[], timestamptz[], text[], text[]);
DROP FUNCTION IF EXISTS :"schema".queue_create(text, float8, integer);
DROP FUNCTION IF EXISTS :"schema".queue_get(text);
DROP FUNCTION IF EXISTS :"schema".queue_list();
DROP FUNCTION IF EXISTS :"schema".queue_stats(text);
