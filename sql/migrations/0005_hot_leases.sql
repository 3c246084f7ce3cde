-- Leasing is a HOT update again (issue 21). 0004's cancel-poll index had
-- leased_by as its key, so every dequeue by a worker (which sets leased_by)
-- changed an indexed column: PostgreSQL then cannot update the row in place
-- (HOT) and adds a new entry to every index of messages, for every message
-- a worker leases (measured: a worker's 100-row dequeue took ~10% longer
-- than a consumer's, and the dequeue index bloated with it). The poll needs
-- no key: the marked rows are few, so it scans them all and keeps its own.
DROP INDEX :"schema".messages_cancel_requested_idx;
CREATE INDEX messages_cancel_requested_idx
    ON :"schema".messages (cancel_requested_at)
    WHERE cancel_requested_at IS NOT NULL;
