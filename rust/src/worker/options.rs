//! The worker's settings: every default a named constant, and the queues it serves.

use std::collections::HashMap;
use std::time::Duration;

use crate::admin::{DEFAULT_WORKER_DEAD_AFTER, DEFAULT_WORKER_PRUNE_AFTER, MAX_BATCH};
use crate::error::{Error, Result};

/// Handlers running at once, by default (all queues of the worker together).
/// A handler's slot is free again as soon as it returns: its outcome waits in
/// the completion backlog, so the worker holds at most `concurrency` plus
/// [`DEFAULT_COMPLETION_BACKLOG`] messages leased at once.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Most messages one fetch leases, by default (never more than free slots).
pub const DEFAULT_BATCH_CAP: usize = 100;
/// While some of a queue's handlers still run, its next dequeue waits until
/// this fraction of its slots is free, so that one round trip fetches several
/// messages rather than one per freed slot. A queue with nothing running
/// fetches at once (an idle worker starts a new message without delay).
pub const DEFAULT_FETCH_BATCH_FRACTION: f64 = 0.25;
/// Longest wait of a free slot for that fraction to be reached: slow
/// handlers finishing one by one still get their slots refilled soon.
pub const DEFAULT_FETCH_DELAY: Duration = Duration::from_millis(2);
/// Messages a worker may dequeue beyond its free slots, to start as soon as a
/// slot frees up instead of after a dequeue round trip. [`Prefetch::Auto`]
/// (the default) adapts it to the handlers' speed: a dequeue takes only the
/// messages the queue's handlers are expected to start within
/// [`DEFAULT_PREFETCH_HORIZON`] (slots x horizon / their recent average
/// duration, at most [`DEFAULT_PREFETCH_PER_SLOT`] per slot). Slow handlers
/// get (almost) no prefetch, so an idle worker elsewhere is not kept from a
/// message; fast ones get round trips that carry many rows.
/// [`Prefetch::Fixed`] fixes it (0: a message is leased only when a handler
/// can start it). Prefetched messages are leased while they wait (their
/// leases extended, their attempt counted), count toward the held bound
/// (`concurrency + completion_backlog`), and are given back, attempt
/// refunded, when the worker stops. The Python worker's default too.
pub const DEFAULT_PREFETCH: Prefetch = Prefetch::Auto;
/// Work [`Prefetch::Auto`] fetches ahead: a prefetched message is expected
/// to wait no longer than this for a slot (about one dequeue round trip on a
/// loaded 2-core machine). Handlers lasting longer than `concurrency` x this
/// get no prefetch at all (at concurrency 16: jobs over 32 ms). Measured for
/// the Python worker, whose value this is.
pub const DEFAULT_PREFETCH_HORIZON: Duration = Duration::from_millis(2);
/// Most messages [`Prefetch::Auto`] takes ahead, per slot of the queue's
/// concurrency (and never more than `batch_cap` in one dequeue). Reached by
/// fast handlers only; it bounds what a worker holds ahead when its handlers
/// turn slow suddenly, until one of them returns or
/// [`DEFAULT_PREFETCH_MAX_WAIT`] has passed (then the waiting ones are given
/// back). As the Python worker's.
pub const DEFAULT_PREFETCH_PER_SLOT: usize = 6;
/// Weight of each returning handler's duration in its queue's running
/// average, from which [`Prefetch::Auto`] expects slots to free up: a queue
/// whose handlers slow down stops prefetching after one or two of the slow
/// ones return (0.25: one 100 ms handler after no-op ones makes the average
/// 25 ms). The duration, not the completion rate, because a rate counted
/// over a window still credits the fast handlers of the window's start.
pub const DEFAULT_PREFETCH_DURATION_WEIGHT: f64 = 0.25;
/// [`Prefetch::Auto`]: time a prefetched message may wait for a slot before
/// it is given back (attempt refunded) for any worker to take. Auto expects
/// a wait of about [`DEFAULT_PREFETCH_HORIZON`]; one 250 times longer means
/// the handlers turned slow, or stuck, after the dequeue (their average only
/// learns that when they return). The queue's handlers are then taken to
/// last at least that long, so nothing more is fetched ahead until they
/// prove faster.
pub const DEFAULT_PREFETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// Time between polls when no NOTIFY arrives.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Backoff before the first retry; it doubles with every attempt.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest backoff between retries.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
/// Each backoff is spread by +- this fraction, so that jobs failing together
/// do not all come back together (the Python worker's default too).
pub const DEFAULT_RETRY_JITTER: f64 = 0.25;
/// Time running handlers get to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Time between heartbeats in the workers table.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Time a finished job's archive/release waits to share one statement with
/// others finishing at about the same time (as Python's worker).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// Most archives (or releases) written by one statement; a full batch is
/// written at once without waiting for the flush interval.
pub const DEFAULT_FLUSH_SIZE: usize = 100;
/// Room for messages whose handler has returned but whose outcome (archive or
/// release) is not written yet: a worker holds at most `concurrency` plus
/// this many messages (running, or waiting for their write), and fetching
/// waits while it holds that many (backpressure), so a worker whose writes
/// stall keeps few leases and bounded memory. Two full flush statements: one
/// being written while the next fills, so handlers never wait for a write.
pub const DEFAULT_COMPLETION_BACKLOG: usize = 2 * DEFAULT_FLUSH_SIZE;
/// Largest `completion_backlog` accepted (as the Python worker's).
pub const MAX_COMPLETION_BACKLOG: usize = 1_000_000;
/// Time between `worker_reap` runs by each worker (marks silent workers dead
/// and prunes old rows; correctness never depends on it).
pub const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(60);
/// Time a stopping worker keeps retrying the outcomes it still holds when
/// the database is unreachable (the messages then come back when their
/// leases expire: nothing is lost).
pub const DEFAULT_SHUTDOWN_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Fraction of a lease after which a running handler's lease is extended
/// (by a whole visibility timeout again).
pub const DEFAULT_LEASE_EXTEND_AT: f64 = 0.5;
/// Longest pause between two checks for leases due for extension (shorter
/// leases are checked more often).
pub const DEFAULT_LEASE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// What is left of `shutdown_write_timeout` after a second stop request.
pub(super) const HARD_STOP_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// Most messages one fetch leases ([`DEFAULT_BATCH_CAP`]).
    pub batch_cap: usize,
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
    /// First retry delay, doubled per attempt ([`DEFAULT_RETRY_BASE`]).
    pub retry_base: Duration,
    /// Longest retry delay ([`DEFAULT_RETRY_MAX`]).
    pub retry_max: Duration,
    /// Spread of each retry delay, a fraction from 0 to 1 ([`DEFAULT_RETRY_JITTER`]).
    pub retry_jitter: f64,
    /// LISTEN for enqueue notifications (turn off behind pgBouncer in
    /// transaction mode, or set `listen_dsn` to a direct connection).
    pub listen: bool,
    /// A DSN for the LISTEN connection only (e.g. bypassing a pooler).
    pub listen_dsn: Option<String>,
    /// Time running handlers get after a shutdown signal ([`DEFAULT_SHUTDOWN_GRACE`]).
    pub shutdown_grace: Duration,
    /// Heartbeat period ([`DEFAULT_HEARTBEAT_INTERVAL`]).
    pub heartbeat_interval: Duration,
    /// Time outcomes wait to share a statement ([`DEFAULT_FLUSH_INTERVAL`]).
    pub flush_interval: Duration,
    /// Most outcomes per statement, 1 to [`MAX_BATCH`] ([`DEFAULT_FLUSH_SIZE`]).
    pub flush_size: usize,
    /// Period of `worker_reap` ([`DEFAULT_REAP_INTERVAL`]).
    pub reap_interval: Duration,
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
    /// Settings of single queues, by name (as the Python worker's per-handler
    /// options); a queue not named here follows the options above.
    pub queue_settings: HashMap<String, QueueSettings>,
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
            batch_cap: DEFAULT_BATCH_CAP,
            prefetch: DEFAULT_PREFETCH,
            poll_interval: DEFAULT_POLL_INTERVAL,
            visibility_timeout: None,
            max_attempts: None,
            retry_base: DEFAULT_RETRY_BASE,
            retry_max: DEFAULT_RETRY_MAX,
            retry_jitter: DEFAULT_RETRY_JITTER,
            listen: true,
            listen_dsn: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            flush_size: DEFAULT_FLUSH_SIZE,
            reap_interval: DEFAULT_REAP_INTERVAL,
            worker_dead_after: DEFAULT_WORKER_DEAD_AFTER,
            worker_prune_after: DEFAULT_WORKER_PRUNE_AFTER,
            shutdown_write_timeout: DEFAULT_SHUTDOWN_WRITE_TIMEOUT,
            lease_extend_at: DEFAULT_LEASE_EXTEND_AT,
            lease_check_interval: DEFAULT_LEASE_CHECK_INTERVAL,
            queue_settings: HashMap::new(),
        }
    }
}

impl WorkerOptions {
    pub(super) fn check(&self) -> Result<()> {
        if self.concurrency < 1 || self.batch_cap < 1 {
            return Err(Error::invalid(format!(
                "concurrency ({}) and batch_cap ({}) must be >= 1",
                self.concurrency, self.batch_cap
            )));
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
        for (name, d) in [
            ("poll_interval", self.poll_interval),
            ("heartbeat_interval", self.heartbeat_interval),
            ("reap_interval", self.reap_interval),
            ("lease_check_interval", self.lease_check_interval),
        ] {
            if d.is_zero() {
                return Err(Error::invalid(format!("{name} must be > 0")));
            }
        }
        if !(0.0..=1.0).contains(&self.retry_jitter) {
            return Err(Error::invalid(format!(
                "retry_jitter is a fraction from 0 to 1, got {}",
                self.retry_jitter
            )));
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
