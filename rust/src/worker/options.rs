//! The worker's settings ([`WorkerOptions`], [`Backoff`], [`Prefetch`],
//! [`QueueSettings`]) and the queues it serves; their defaults are in
//! [`super::defaults`]. The names are the Python worker's.

use std::collections::HashMap;
use std::time::Duration;

use super::defaults::*;
use crate::admin::{bounded_secs, DEFAULT_WORKER_DEAD_AFTER, DEFAULT_WORKER_PRUNE_AFTER, MAX_BATCH};
use crate::error::{Error, Result};

/// Messages a worker may dequeue beyond its free slots, to start as soon as a
/// slot frees up instead of after a dequeue round trip. [`Prefetch::Auto`]
/// (the default, as in Python: `"auto"` in `sql/worker_defaults.json`)
/// adapts it to the handlers' speed: a dequeue takes only the messages the
/// queue's handlers are expected to start within [`DEFAULT_PREFETCH_HORIZON`]
/// (slots x horizon / their recent average duration, at most
/// [`DEFAULT_PREFETCH_PER_SLOT`] per slot). Slow handlers get (almost) no
/// prefetch, so an idle worker elsewhere is not kept from a message; fast
/// ones get round trips that carry many rows. [`Prefetch::Fixed`] fixes it
/// (0: a message is leased only when a handler can start it). Prefetched
/// messages are leased while they wait (their leases extended, their attempt
/// counted), count toward the held bound (`concurrency +
/// completion_backlog`), and are given back, attempt refunded, when the
/// worker stops.
pub const DEFAULT_PREFETCH: Prefetch = Prefetch::Auto;
/// Largest `completion_backlog` accepted (as the Python worker's).
pub const MAX_COMPLETION_BACKLOG: usize = 1_000_000;

/// How a [`Worker`](super::Worker) runs. `WorkerOptions::default()` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Handlers running at once, all queues together ([`DEFAULT_CONCURRENCY`]).
    /// A handler's slot is free again as soon as it returns; its outcome
    /// then waits in the completion backlog to be written.
    pub concurrency: usize,
    /// Messages held beyond `concurrency` whose outcome waits to be written
    /// ([`DEFAULT_COMPLETION_BACKLOG`]): the worker holds at most
    /// `concurrency + completion_backlog` messages (running, or waiting for
    /// their write), and fetching waits while it holds that many. 0 frees no
    /// room: a slot is reused only once its outcome is written. At most
    /// [`MAX_COMPLETION_BACKLOG`].
    pub completion_backlog: usize,
    /// Most messages one dequeue leases ([`DEFAULT_BATCH_CAP`]; Python's `batch_size`).
    pub batch_size: usize,
    /// Messages a dequeue may take beyond the free slots, leased while they
    /// wait for one (within the held bound; given back, attempt refunded, on
    /// stop): [`Prefetch::Auto`] ([`DEFAULT_PREFETCH`]) or [`Prefetch::Fixed`].
    pub prefetch: Prefetch,
    /// Poll this often when no NOTIFY arrives ([`DEFAULT_POLL_INTERVAL`]).
    pub poll_interval: Duration,
    /// Lease length; None: each queue's visibility timeout.
    pub visibility_timeout: Option<Duration>,
    /// Deliveries before `dead`; None: each queue's max_attempts (a worker
    /// can only lower it: the queue's limit is enforced at dequeue).
    pub max_attempts: Option<i32>,
    /// Retry delays after a handler's failure ([`Backoff::default`]).
    pub backoff: Backoff,
    /// No LISTEN for enqueue notifications, polling only (for pgBouncer in
    /// transaction mode; or set `listen_dsn` to a direct connection).
    pub poll_only: bool,
    /// A DSN for the LISTEN connection only (e.g. bypassing a pooler); not
    /// with `poll_only`.
    pub listen_dsn: Option<String>,
    /// Time running handlers get after a shutdown signal ([`DEFAULT_GRACE_PERIOD`]).
    pub grace_period: Duration,
    /// Heartbeat period ([`DEFAULT_HEARTBEAT_INTERVAL`]).
    pub heartbeat_interval: Duration,
    /// Time outcomes wait to share a statement ([`DEFAULT_FLUSH_INTERVAL`]).
    pub flush_interval: Duration,
    /// Most outcomes per statement, 1 to [`MAX_BATCH`] ([`DEFAULT_FLUSH_SIZE`]).
    pub flush_size: usize,
    /// Period of `worker_reap` ([`DEFAULT_REAP_INTERVAL`]).
    pub reap_interval: Duration,
    /// Period of the enforcement of the served queues' archive retention
    /// (`archive_prune`, [`DEFAULT_ARCHIVE_PRUNE_INTERVAL`]).
    pub archive_prune_interval: Duration,
    /// Most archived messages one `archive_prune` deletes ([`DEFAULT_ARCHIVE_PRUNE_BATCH`]).
    pub archive_prune_batch: usize,
    /// Silence after which reaping marks a worker dead
    /// ([`DEFAULT_WORKER_DEAD_AFTER`], as `Admin::reap_workers`).
    pub worker_dead_after: Duration,
    /// Age after which reaping prunes stopped and dead workers
    /// ([`DEFAULT_WORKER_PRUNE_AFTER`]).
    pub worker_prune_after: Duration,
    /// Time a stopping worker retries unwritten outcomes ([`DEFAULT_SHUTDOWN_WRITE_TIMEOUT`]).
    pub shutdown_write_timeout: Duration,
    /// Fraction of a lease after which it is extended, above 0 and below 1
    /// ([`DEFAULT_LEASE_EXTEND_AT`]).
    pub lease_extend_at: f64,
    /// Longest pause between checks for leases to extend ([`DEFAULT_LEASE_CHECK_INTERVAL`]).
    pub lease_check_interval: Duration,
    /// Fraction of a queue's slots that must be free, while some of its
    /// handlers still run, before it dequeues again, above 0 and at most 1
    /// ([`DEFAULT_FETCH_BATCH_FRACTION`]).
    pub fetch_batch_fraction: f64,
    /// Longest wait of a free slot for that fraction ([`DEFAULT_FETCH_DELAY`]).
    pub fetch_delay: Duration,
    /// [`Prefetch::Auto`]: work fetched ahead ([`DEFAULT_PREFETCH_HORIZON`]).
    pub prefetch_horizon: Duration,
    /// [`Prefetch::Auto`]: most messages ahead per slot ([`DEFAULT_PREFETCH_PER_SLOT`]).
    pub prefetch_per_slot: usize,
    /// [`Prefetch::Auto`]: weight of each handler's duration in its queue's
    /// running average, above 0 and at most 1 ([`DEFAULT_PREFETCH_DURATION_WEIGHT`]).
    pub prefetch_duration_weight: f64,
    /// [`Prefetch::Auto`]: time a prefetched message waits for a slot before
    /// it is given back, above 0 ([`DEFAULT_PREFETCH_MAX_WAIT`]).
    pub prefetch_max_wait: Duration,
    /// Settings of single queues, by name (as the Python worker's per-handler
    /// options); a queue not named here follows the options above.
    pub queue_settings: HashMap<String, QueueSettings>,
    /// Fire the schema's due schedules (docs/schedules.md): None (the
    /// default) only when the worker declares some with `Worker::schedule`.
    pub run_schedules: Option<bool>,
}

/// Retry delay after a failed attempt: `base * 2^(attempt-1)`, capped at
/// `max`, spread by +-`jitter` (a fraction) so that jobs failing together do
/// not all come back together (Python's `pgqrs.Backoff`). The delay is
/// computed in SQL, by `message_fail` (`sql/functions/message_fail.sql`),
/// from these three values: one rule for the Python and Rust workers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure, doubled per attempt ([`DEFAULT_BACKOFF_BASE`]).
    pub base: Duration,
    /// Longest delay, at least `base` ([`DEFAULT_BACKOFF_MAX`]).
    pub max: Duration,
    /// Spread of each delay, a fraction from 0 to 1 ([`DEFAULT_BACKOFF_JITTER`]).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: DEFAULT_BACKOFF_BASE, max: DEFAULT_BACKOFF_MAX, jitter: DEFAULT_BACKOFF_JITTER }
    }
}

impl Backoff {
    /// An InvalidArgument error naming the value, before any round trip.
    pub(crate) fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::invalid(format!(
                "backoff.jitter is a fraction from 0 to 1, got {}",
                self.jitter
            )));
        }
        if self.max < self.base {
            return Err(Error::invalid(format!(
                "backoff.max ({:?}) must be >= backoff.base ({:?})",
                self.max, self.base
            )));
        }
        bounded_secs(self.max, "backoff.max")?;
        Ok(())
    }
}

/// How many messages a dequeue may take beyond the free slots (see [`DEFAULT_PREFETCH`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// What each queue's handlers are expected to start within
    /// [`DEFAULT_PREFETCH_HORIZON`], from their recent durations; those still
    /// waiting [`DEFAULT_PREFETCH_MAX_WAIT`] after their dequeue are given back.
    Auto,
    /// At most this many waiting in all, 0 to [`MAX_BATCH`] (0: a message is
    /// leased only when a handler can start it).
    Fixed(usize),
}

impl Default for Prefetch {
    fn default() -> Self {
        DEFAULT_PREFETCH
    }
}

/// Settings of one queue of a worker that override the worker's own.
#[derive(Debug, Clone, Default)]
pub struct QueueSettings {
    /// Most of this queue's handlers running at once (never more than the
    /// worker's `concurrency`, which all queues share).
    pub concurrency: Option<usize>,
    /// Lease length for this queue's messages.
    pub visibility_timeout: Option<Duration>,
    /// Deliveries before `dead` (at most the queue's own max_attempts).
    pub max_attempts: Option<i32>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: DEFAULT_CONCURRENCY,
            completion_backlog: DEFAULT_COMPLETION_BACKLOG,
            batch_size: DEFAULT_BATCH_CAP,
            prefetch: DEFAULT_PREFETCH,
            poll_interval: DEFAULT_POLL_INTERVAL,
            visibility_timeout: None,
            max_attempts: None,
            backoff: Backoff::default(),
            poll_only: false,
            listen_dsn: None,
            grace_period: DEFAULT_GRACE_PERIOD,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            flush_size: DEFAULT_FLUSH_SIZE,
            reap_interval: DEFAULT_REAP_INTERVAL,
            archive_prune_interval: DEFAULT_ARCHIVE_PRUNE_INTERVAL,
            archive_prune_batch: DEFAULT_ARCHIVE_PRUNE_BATCH,
            worker_dead_after: DEFAULT_WORKER_DEAD_AFTER,
            worker_prune_after: DEFAULT_WORKER_PRUNE_AFTER,
            shutdown_write_timeout: DEFAULT_SHUTDOWN_WRITE_TIMEOUT,
            lease_extend_at: DEFAULT_LEASE_EXTEND_AT,
            lease_check_interval: DEFAULT_LEASE_CHECK_INTERVAL,
            fetch_batch_fraction: DEFAULT_FETCH_BATCH_FRACTION,
            fetch_delay: DEFAULT_FETCH_DELAY,
            prefetch_horizon: DEFAULT_PREFETCH_HORIZON,
            prefetch_per_slot: DEFAULT_PREFETCH_PER_SLOT,
            prefetch_duration_weight: DEFAULT_PREFETCH_DURATION_WEIGHT,
            prefetch_max_wait: DEFAULT_PREFETCH_MAX_WAIT,
            queue_settings: HashMap::new(),
            run_schedules: None,
        }
    }
}

impl WorkerOptions {
    pub(super) fn check(&self) -> Result<()> {
        if self.concurrency < 1 || self.batch_size < 1 {
            return Err(Error::invalid(format!(
                "concurrency ({}) and batch_size ({}) must be >= 1",
                self.concurrency, self.batch_size
            )));
        }
        if self.poll_only && self.listen_dsn.is_some() {
            return Err(Error::invalid(
                "listen_dsn is for LISTEN, which poll_only turns off: set one or the other",
            ));
        }
        if self.completion_backlog > MAX_COMPLETION_BACKLOG {
            return Err(Error::invalid(format!(
                "completion_backlog must be 0 to {MAX_COMPLETION_BACKLOG}, got {}",
                self.completion_backlog
            )));
        }
        if let Prefetch::Fixed(n) = self.prefetch {
            if n > MAX_BATCH {
                return Err(Error::invalid(format!(
                    "prefetch must be Auto or Fixed(0 to {MAX_BATCH}), got {n}"
                )));
            }
        }
        if !(1..=MAX_BATCH).contains(&self.flush_size) {
            return Err(Error::invalid(format!(
                "flush_size must be 1 to {MAX_BATCH}, got {}",
                self.flush_size
            )));
        }
        if !(1..=100_000).contains(&self.archive_prune_batch) {
            return Err(Error::invalid(format!(
                "archive_prune_batch must be 1 to 100000, got {}",
                self.archive_prune_batch
            )));
        }
        for (name, d) in [
            ("poll_interval", self.poll_interval),
            ("heartbeat_interval", self.heartbeat_interval),
            ("reap_interval", self.reap_interval),
            ("archive_prune_interval", self.archive_prune_interval),
            ("lease_check_interval", self.lease_check_interval),
            ("prefetch_max_wait", self.prefetch_max_wait),
        ] {
            if d.is_zero() {
                return Err(Error::invalid(format!("{name} must be > 0")));
            }
        }
        self.backoff.check()?;
        for (name, f) in [
            ("fetch_batch_fraction", self.fetch_batch_fraction),
            ("prefetch_duration_weight", self.prefetch_duration_weight),
        ] {
            if !(f > 0.0 && f <= 1.0) {
                return Err(Error::invalid(format!("{name} is a fraction above 0 and at most 1, got {f}")));
            }
        }
        if !(self.lease_extend_at > 0.0 && self.lease_extend_at < 1.0) {
            return Err(Error::invalid(format!(
                "lease_extend_at is a fraction above 0 and below 1, got {}",
                self.lease_extend_at
            )));
        }
        check_limits("", self.visibility_timeout, self.max_attempts)?;
        for (queue, s) in &self.queue_settings {
            if s.concurrency == Some(0) {
                return Err(Error::invalid(format!("queue_settings[{queue:?}].concurrency must be >= 1")));
            }
            check_limits(&format!("queue_settings[{queue:?}]."), s.visibility_timeout, s.max_attempts)?;
        }
        Ok(())
    }
}

fn check_limits(prefix: &str, visibility_timeout: Option<Duration>, max_attempts: Option<i32>) -> Result<()> {
    if visibility_timeout.is_some_and(|d| d.is_zero()) {
        return Err(Error::invalid(format!("{prefix}visibility_timeout must be > 0 (None: the queue's)")));
    }
    if let Some(m) = max_attempts.filter(|m| *m < 1) {
        return Err(Error::invalid(format!("{prefix}max_attempts must be >= 1, got {m}")));
    }
    Ok(())
}

/// The queues a [`Worker`](super::Worker) serves: one name (`"tasks"`), or several
/// (`["a", "b"]`, `&["a", "b"]`, a `Vec` of `&str` or `String`).
pub trait Queues {
    /// The queue names.
    fn queue_names(self) -> Vec<String>;
}

impl Queues for &str {
    fn queue_names(self) -> Vec<String> {
        vec![self.to_string()]
    }
}
impl Queues for String {
    fn queue_names(self) -> Vec<String> {
        vec![self]
    }
}
impl Queues for &String {
    fn queue_names(self) -> Vec<String> {
        vec![self.clone()]
    }
}
impl<S: AsRef<str>> Queues for &[S] {
    fn queue_names(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}
impl<S: AsRef<str>, const N: usize> Queues for [S; N] {
    fn queue_names(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}
impl<S: AsRef<str>, const N: usize> Queues for &[S; N] {
    fn queue_names(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}
impl<S: AsRef<str>> Queues for Vec<S> {
    fn queue_names(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}
