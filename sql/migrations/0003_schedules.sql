-- Schedules (docs/schedules.md): named, recurring enqueues, fired by any
-- running worker with no leader. The slots are computed by the clients (a
-- cron library in each language, one documented rule); the database keeps
-- the plan (next_slot) and one record per fired slot.

-- One row per schedule. `next_slot` is the next slot to fire, computed by the
-- client that last fired (NULL: not planned yet; a worker plans it at its
-- next tick). Firing compares and sets it (schedule_fire), so two workers
-- firing the same slot produce one message.
CREATE TABLE :"schema".schedules (
    name             text        PRIMARY KEY,
    queue            text        NOT NULL,
    payload          jsonb       NOT NULL,
    headers          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority         integer     NOT NULL DEFAULT 0,
    cron             text,
    interval_seconds bigint,
    time_zone        text        NOT NULL DEFAULT 'UTC',
    missed           text        NOT NULL DEFAULT 'skip',
    paused           boolean     NOT NULL DEFAULT false,
    next_slot        timestamptz,
    last_slot        timestamptz,
    last_fired_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_name_valid CHECK (name ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    CONSTRAINT schedules_one_timing CHECK ((cron IS NULL) <> (interval_seconds IS NULL)),
    CONSTRAINT schedules_interval_positive CHECK (interval_seconds > 0),
    CONSTRAINT schedules_missed_valid CHECK (missed IN ('skip', 'latest'))
);

-- One row per fired slot, written in the same statement as its message: the
-- primary key makes a second message for a slot impossible. Rows older than a
-- day before the schedule's newest slot are pruned as it fires (the
-- compare-and-set on next_slot already keeps older slots from firing again).
CREATE TABLE :"schema".schedule_slots (
    schedule   text        NOT NULL,
    slot       timestamptz NOT NULL,
    message_id bigint      NOT NULL,
    fired_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, slot)
);
