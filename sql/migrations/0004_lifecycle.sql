-- The job's whole life (issue 16): cancellation, progress, waiting for a
-- result, archive retention.

-- Cancellation of a leased message: the admin marks it; its holder learns it
-- at its next fenced statement (extend, archive, fail, release) or from the
-- worker's cancel poll, and the message is archived as 'cancelled'. A marked
-- message whose lease runs out is archived as 'cancelled' by the next dequeue,
-- never delivered again.
ALTER TABLE :"schema".messages ADD COLUMN cancel_requested_at timestamptz;

-- The latest progress a running handler recorded (a JSON value), kept in the
-- archive when the message is archived.
ALTER TABLE :"schema".messages ADD COLUMN progress jsonb;
ALTER TABLE :"schema".archive ADD COLUMN progress jsonb;

-- The worker's cancel poll looks for its own marked messages: the marked rows
-- are few, so a partial index keeps the poll an index probe on an (almost
-- always) empty index.
CREATE INDEX messages_cancel_requested_idx
    ON :"schema".messages (leased_by)
    WHERE cancel_requested_at IS NOT NULL;

-- How long archived messages of a queue are kept (NULL: for ever); running
-- workers delete older ones in small batches (archive_prune).
ALTER TABLE :"schema".queues ADD COLUMN archive_retention interval;
ALTER TABLE :"schema".queues ADD CONSTRAINT queues_archive_retention_positive
    CHECK (archive_retention IS NULL OR archive_retention > interval '0');

-- archive_prune walks a queue's archive oldest first, whatever the status:
-- archive_queue_status_idx leads with status, so it cannot.
CREATE INDEX archive_queue_archived_at_idx ON :"schema".archive (queue, archived_at);

-- Message ids someone waits for (Admin.wait): the archive trigger NOTIFYs
-- only for these, so archiving stays free of NOTIFY (which serialises
-- committing transactions) while nobody waits. A waiter that dies leaves its
-- row until expires_at; archive_wait removes expired rows.
CREATE TABLE :"schema".archive_waiters (
    id         bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX archive_waiters_id_idx ON :"schema".archive_waiters (id);

-- Functions whose result columns change (progress; dashboard_message also
-- cancel_requested_at): dropped here, re-created from their files by install
-- (sql/README.md, "Changing a function's signature"). Their grants come back
-- with `pgqrs grant`.
DROP FUNCTION IF EXISTS :"schema".message_peek(text, bigint);
DROP FUNCTION IF EXISTS :"schema".archive_list(text, text, bigint);
DROP FUNCTION IF EXISTS :"schema".dashboard_message(bigint);
