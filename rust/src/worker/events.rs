//! Per-job events a caller can subscribe to ([`Worker::subscribe`](super::Worker::subscribe)),
//! the same kinds as the Python worker's, and the worker's counters.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Counters a caller can read while the worker runs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Messages archived as completed.
    pub completed: AtomicU64,
    /// Handler failures that were released for a retry.
    pub retried: AtomicU64,
    /// Messages archived as dead.
    pub dead: AtomicU64,
    /// Handlers running now.
    pub running: AtomicU64,
    /// Messages held now: running (or about to start), prefetched, or waiting
    /// for their outcome to be written; at most `concurrency + completion_backlog`.
    pub in_flight: AtomicU64,
    /// Outcomes refused by the fence: the lease had passed to another consumer.
    pub lease_lost: AtomicU64,
    /// Messages archived as cancelled (`Admin::cancel` while held).
    pub cancelled: AtomicU64,
    /// Messages dequeued ahead of a free slot (see [`WorkerOptions::prefetch`](super::WorkerOptions::prefetch)).
    pub prefetched: AtomicU64,
    /// Outcomes given up on (logged as errors; the messages come back when
    /// their leases expire).
    pub unwritten: AtomicU64,
    /// Messages this worker enqueued for schedules.
    pub scheduled: AtomicU64,
    /// Schedule ticks this worker ran.
    pub schedule_ticks: AtomicU64,
}

/// Events kept for a subscriber that reads slower than jobs run; past that
/// it misses the oldest (its `recv` reports how many, as `Lagged`).
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobEventKind {
    /// The handler was called.
    Started,
    /// The message was archived as `completed`.
    Completed,
    /// The handler failed (an error other than an explicit [`JobError::retry`](super::JobError::retry), or a panic).
    Failed,
    /// The message was released for another attempt after `delay`.
    Retried,
    /// The message was archived as `dead`.
    Dead,
    /// The outcome was refused: the lease had passed to another consumer.
    LeaseLost,
    /// The message was archived as `cancelled` (`Admin::cancel` while this
    /// worker held it: the handler's future was dropped, or its result ignored).
    Cancelled,
}

/// One job event. Completed, Retried and Dead are sent once the outcome is
/// written to the database.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobEvent {
    /// What happened.
    pub kind: JobEventKind,
    /// The message.
    pub message_id: i64,
    /// Its queue.
    pub queue: String,
    /// Its delivery count (1 for the first).
    pub attempt: i32,
    /// The worker's id in the workers table.
    pub worker_id: i64,
    /// The handler's error (Failed, Retried, Dead).
    pub error: Option<String>,
    /// The delay before the next attempt (Retried), as `message_fail`
    /// computed it (None in the rare case that the reply of its write was
    /// lost and a retry of the write found it done).
    pub delay: Option<Duration>,
}
