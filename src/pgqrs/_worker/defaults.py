"""Every default of the worker runtime, one named constant each."""

from __future__ import annotations

from typing import Final, Literal

#: Handlers of one worker running at the same time (all queues together). A
#: handler's slot is free again as soon as it returns: its outcome waits in the
#: completion backlog, so the worker holds at most ``concurrency +
#: DEFAULT_COMPLETION_BACKLOG`` messages leased at once.
DEFAULT_CONCURRENCY = 8
#: Seconds between polls of an idle queue. NOTIFY wakes a worker sooner; the
#: poll is the fallback that makes NOTIFY a hint only.
DEFAULT_POLL_INTERVAL = 1.0
#: Most messages one dequeue statement asks for (the free slots, capped).
DEFAULT_BATCH_CAP = 100
#: While some of a queue's handlers still run, its next dequeue waits until
#: this fraction of its slots is free, so that one round trip fetches several
#: messages rather than one per freed slot. A queue with nothing running
#: fetches at once (an idle worker starts a new message without delay).
DEFAULT_FETCH_BATCH_FRACTION = 0.25
#: Longest wait, in seconds, of a free slot for that fraction to be reached:
#: slow handlers finishing one by one still get their slots refilled soon.
DEFAULT_FETCH_DELAY = 0.002
#: Messages a worker may dequeue beyond its free slots, to start as soon as a
#: slot frees up instead of after a dequeue round trip. ``"auto"`` (the
#: default) adapts it to the handlers' speed: a dequeue takes only the
#: messages this queue's handlers are expected to start within
#: ``DEFAULT_PREFETCH_HORIZON`` (slots x horizon / their recent average
#: duration, at most ``DEFAULT_PREFETCH_PER_SLOT`` per slot). Slow handlers get
#: (almost) no prefetch, so, like River and Oban, an idle worker elsewhere is
#: not kept from a message; fast ones get round trips that carry many rows.
#: An int fixes it (0: a message is leased only when a handler can start it).
#: Prefetched messages are leased while they wait (their leases extended,
#: their attempt counted), count toward the held bound (concurrency +
#: completion backlog), and are given back, attempt refunded, when the
#: worker stops.
DEFAULT_PREFETCH: Final[Literal["auto"]] = "auto"
#: Seconds of work ``prefetch="auto"`` fetches ahead: a prefetched message is
#: expected to wait no longer than this for a slot (about one dequeue round
#: trip on a loaded 2-core machine). Handlers lasting longer than
#: ``concurrency`` x this get no prefetch at all (at concurrency 16: jobs over
#: 32 ms). Measured at concurrency 16, interleaved rounds, medians of 5:
#: no-op handlers reach the per-slot cap with 0.002 s as with 0.005 s;
#: 2 ms handlers drained as fast with 0.002 s as with 0.005 s (4,449 and
#: 4,392 jobs/s; 3,781 with prefetch 0) holding 14 ahead instead of 36;
#: 10 ms handlers held 3 ahead instead of 7 (1,339 jobs/s against 1,428;
#: 1,279 with prefetch 0).
DEFAULT_PREFETCH_HORIZON = 0.002
#: Most messages ``prefetch="auto"`` takes ahead, per slot of the queue's
#: concurrency (and never more than ``batch_size`` in one dequeue). Reached by
#: fast handlers only; it bounds what a worker holds ahead when its handlers
#: turn slow suddenly, until one of them returns or
#: ``DEFAULT_PREFETCH_MAX_WAIT`` has passed (then the waiting ones are given
#: back). No-op handlers at concurrency 16 on a
#: 2-core machine, interleaved rounds, medians of 5: 18,919 jobs/s with 6
#: (96, so a dequeue brings up to the 100-row batch cap) against 17,471 with
#: 3 (48) and 12,488 with prefetch 0, about half the dequeues of 3 per slot;
#: in a busier session it drained like a fixed prefetch of 48 (14,867 and
#: 14,845; 10,180 with prefetch 0).
DEFAULT_PREFETCH_PER_SLOT = 6
#: Weight of each returning handler's duration in its queue's running
#: average, from which ``prefetch="auto"`` expects slots to free up: a queue
#: whose handlers slow down stops prefetching after one or two of the slow
#: ones return (0.25: one 100 ms handler after no-op ones makes the average
#: 25 ms). The duration, not the completion rate, because a rate counted over
#: a window still credits the fast handlers of the window's start once they
#: have slowed down, and falls when the machine is busy (smaller batches,
#: more round trips, just when they cost most); a no-op handler stays short.
DEFAULT_PREFETCH_DURATION_WEIGHT = 0.25
#: ``prefetch="auto"``: seconds a prefetched message may wait for a slot
#: before it is given back (attempt refunded) for any worker to take. Auto
#: expects a wait of about ``DEFAULT_PREFETCH_HORIZON``; one 250 times longer
#: means the handlers turned slow, or stuck, after the dequeue (their
#: average only learns that when they return). The queue's handlers are then
#: taken to last at least that long, so nothing more is fetched ahead until
#: they prove faster.
DEFAULT_PREFETCH_MAX_WAIT = 0.5
#: Seconds a finished job's archive/release waits to share one statement with
#: others finishing at about the same time.
DEFAULT_FLUSH_INTERVAL = 0.005
#: Most archives (or releases) written by one statement; a full batch is
#: written at once without waiting for the flush interval.
DEFAULT_FLUSH_SIZE = 100
#: Room for messages whose handler has returned but whose outcome (archive or
#: release) is not written yet: a worker holds at most ``concurrency`` plus
#: this many messages (running, or waiting for their write), and fetching
#: waits while it holds that many (backpressure), so a worker whose writes
#: stall keeps few leases and bounded memory. Two full flush statements: one
#: being written while the next fills, so handlers never wait for a write.
DEFAULT_COMPLETION_BACKLOG = 2 * DEFAULT_FLUSH_SIZE
#: Seconds running handlers get to finish after a stop request (SIGTERM,
#: SIGINT, ``stop()``) before their leases are released.
DEFAULT_GRACE_PERIOD = 30.0
#: Seconds between heartbeats written to the workers table.
DEFAULT_HEARTBEAT_INTERVAL = 10.0
#: Seconds between ``worker_reap`` runs by each worker (marks silent workers
#: dead and prunes old rows; correctness never depends on it).
DEFAULT_REAP_INTERVAL = 60.0
# When reaping, workers use Admin.reap_workers()'s defaults
# (pgqrs._async.admin.DEFAULT_WORKER_DEAD_AFTER and DEFAULT_WORKER_PRUNE_AFTER).
#: Fraction of a lease after which a still-running handler's lease is extended
#: (by a whole lease again).
DEFAULT_LEASE_EXTEND_AT = 0.5
#: Longest pause, in seconds, between two checks for leases due for extension
#: (shorter leases are checked more often).
DEFAULT_LEASE_CHECK_INTERVAL = 1.0
#: Retry delay, in seconds, after a handler's first failure; doubles each attempt.
DEFAULT_BACKOFF_BASE = 1.0
#: Longest retry delay, in seconds.
DEFAULT_BACKOFF_MAX = 300.0
#: Random spread of a retry delay, as a fraction (0.25: +-25%), so that jobs
#: failing together do not retry together.
DEFAULT_BACKOFF_JITTER = 0.25
#: First wait, in seconds, before talking to the database again after a
#: connection failure; doubles up to ``DEFAULT_RECONNECT_MAX``.
DEFAULT_RECONNECT_MIN = 0.05
#: Longest wait, in seconds, between reconnection attempts.
DEFAULT_RECONNECT_MAX = 5.0
#: Seconds a stopping worker keeps retrying the archive/release writes it
#: still holds when the database is unreachable (after that the messages come
#: back when their leases expire: nothing is lost).
DEFAULT_SHUTDOWN_WRITE_TIMEOUT = 10.0
