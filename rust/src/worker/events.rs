//! Per-job events a caller can subscribe to ([`Worker::subscribe`](super::Worker::subscribe)),
//! the same kinds as the Python worker's.

use std::time::Duration;

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
    /// The delay before the next attempt (Retried).
    pub delay: Option<Duration>,
}
