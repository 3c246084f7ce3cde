//! Worker: run a handler over one or more queues, with bounded concurrency,
//! retries with backoff, lease extension, batched completions, NOTIFY
//! wake-ups plus polling, periodic reaping of dead workers, and graceful
//! shutdown.
//!
//! ```no_run
//! use pgqrs::{Config, JobError, Message, Worker, WorkerOptions};
//!
//! # async fn run() -> Result<(), pgqrs::Error> {
//! let config = Config::from_env()?;
//! let worker = Worker::new(&config, ["emails", "reports"], WorkerOptions::default()).await?;
//! // Runs until SIGINT or SIGTERM; running jobs get `shutdown_grace` to finish.
//! worker
//!     .run(|msg: Message| async move {
//!         match msg.queue.as_str() {
//!             "emails" => {
//!                 let to = msg.payload["to"].as_str().ok_or_else(|| JobError::give_up("no recipient"))?;
//!                 println!("sending to {to}");
//!             }
//!             _ => println!("report {}", msg.payload),
//!         }
//!         Ok::<_, JobError>(())
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! One handler serves every queue of the worker (`msg.queue` says which);
//! the concurrency is shared by all of them, and each queue has its own fetch
//! loop: one dequeue statement takes as many messages as there are free slots
//! (up to `batch_cap`), so no more than `concurrency` messages are ever held.
//!
//! A handler that returns `Ok(value)` has its message archived as
//! `completed` with `value` (any `Serialize`, `()` for none) as the result.
//! One that returns `Err` (or panics) has its message released with an
//! exponential backoff plus jitter and the error recorded; after the queue's
//! `max_attempts` deliveries (or at once, for [`JobError::give_up`]) the
//! message goes to the archive as `dead`. Outcomes are written in batches: the
//! archives (and releases) of jobs finishing within `flush_interval` share one
//! statement, at most `flush_size` rows, each row still fenced by its lease;
//! a write that fails on the connection is retried until it succeeds (a
//! stopping worker gives up after `shutdown_write_timeout`, with an error log
//! naming the messages, which come back when their leases expire).
//!
//! While a handler runs, its lease is extended every third of the visibility
//! timeout, so long jobs are not redelivered. If the worker dies, its
//! messages come back when their leases expire: correctness needs no reaper.
//! Still, every `reap_interval` each worker runs `worker_reap`, which marks
//! workers that stopped heartbeating as dead and prunes old rows.
//!
//! On shutdown the worker stops fetching, gives back what a dequeue brought
//! in after the stop (with the attempt refunded: no handler started), lets
//! running handlers finish within `shutdown_grace`, then releases the
//! messages of those still running (their attempt counts), writes the
//! outcomes it holds and marks itself stopped.

mod backoff;
mod completer;
mod listen;

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::types::Type;
use uuid::Uuid;

use self::backoff::{backoff, Reconnect};
pub use self::backoff::{RECONNECT_MAX, RECONNECT_MIN};
use self::completer::{Action, Completer, CompleterHandle, Outcome, Settlement};
use crate::admin::{DEFAULT_WORKER_DEAD_AFTER, DEFAULT_WORKER_PRUNE_AFTER, MAX_BATCH};
use crate::config::Config;
use crate::consumer::{dequeue_result, DEQUEUE_DEAD_RETRIES};
use crate::db::{col, Db};
use crate::error::{Error, ErrorKind, Result};
use crate::message::{Message, QueueInfo};
use crate::payload::encode;
use crate::queries::Query;
use crate::validate::validate_queue_name;

/// Handlers running at once, by default (all queues of the worker together).
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Most messages one fetch leases, by default (never more than free slots).
pub const DEFAULT_BATCH_CAP: usize = 100;
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
/// Time between `worker_reap` runs by each worker (marks silent workers dead
/// and prunes old rows; correctness never depends on it).
pub const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(60);
/// Time a stopping worker keeps retrying the outcomes it still holds when
/// the database is unreachable (the messages then come back when their
/// leases expire: nothing is lost).
pub const DEFAULT_SHUTDOWN_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// What is left of `shutdown_write_timeout` after a second stop request.
const HARD_STOP_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// How a [`Worker`] runs. `WorkerOptions::default()` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Handlers running at once, all queues together ([`DEFAULT_CONCURRENCY`]).
    pub concurrency: usize,
    /// Most messages one fetch leases ([`DEFAULT_BATCH_CAP`]).
    pub batch_cap: usize,
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
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: DEFAULT_CONCURRENCY,
            batch_cap: DEFAULT_BATCH_CAP,
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
        }
    }
}

impl WorkerOptions {
    fn check(&self) -> Result<()> {
        if self.concurrency < 1 || self.batch_cap < 1 {
            return Err(Error::invalid(format!(
                "concurrency ({}) and batch_cap ({}) must be >= 1",
                self.concurrency, self.batch_cap
            )));
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
        if self.max_attempts.is_some_and(|m| m < 1) {
            return Err(Error::invalid(format!("max_attempts must be >= 1, got {:?}", self.max_attempts)));
        }
        Ok(())
    }
}

/// The queues a [`Worker`] serves: one name (`"tasks"`), or several
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

/// Why a handler failed, and what to do about it. Any `std::error::Error`
/// converts into a retryable JobError, so handlers can use `?`.
#[derive(Debug)]
pub struct JobError {
    message: String,
    retry: Retry,
    /// Recorded as the error's "type".
    kind: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Retry {
    Backoff,
    After(Duration),
    GiveUp,
}

impl JobError {
    /// Retry later, with the worker's backoff.
    pub fn retry(message: impl std::fmt::Display) -> JobError {
        JobError { message: message.to_string(), retry: Retry::Backoff, kind: "pgqrs.Retry" }
    }
    /// Retry after exactly `delay` (still dead after max_attempts).
    pub fn retry_after(message: impl std::fmt::Display, delay: Duration) -> JobError {
        JobError { message: message.to_string(), retry: Retry::After(delay), kind: "pgqrs.Retry" }
    }
    /// Do not retry: archive the message as `dead` now.
    pub fn give_up(message: impl std::fmt::Display) -> JobError {
        JobError { message: message.to_string(), retry: Retry::GiveUp, kind: "pgqrs.Abort" }
    }
    /// The error text recorded on the message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError { message: e.to_string(), retry: Retry::Backoff, kind: std::any::type_name::<E>() }
    }
}

/// Counters a caller can read while the worker runs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Messages archived as completed.
    pub completed: AtomicU64,
    /// Handler failures that were released for a retry.
    pub retried: AtomicU64,
    /// Messages archived as dead.
    pub dead: AtomicU64,
    /// Messages held now: handlers running, or outcomes being written.
    pub in_flight: AtomicU64,
    /// Outcomes refused by the fence: the lease had passed to another consumer.
    pub lease_lost: AtomicU64,
    /// Outcomes given up on (logged as errors; the messages come back when
    /// their leases expire).
    pub unwritten: AtomicU64,
}

/// Asks a running worker to stop: the first call drains gracefully, the
/// second stops at once (releasing the leases of handlers still running).
#[derive(Clone)]
pub struct StopHandle(watch::Sender<u8>);

impl StopHandle {
    /// One step towards stopping (graceful, then immediate).
    pub fn stop(&self) {
        self.0.send_modify(|level| *level = (*level + 1).min(2));
    }
}

/// A worker for one or more queues. See the [module docs](self). A Worker
/// runs once: after it has been stopped, make a new one to run again.
pub struct Worker {
    db: Db,
    config: Config,
    queues: Vec<String>,
    options: WorkerOptions,
    stop: watch::Sender<u8>,
    stats: Arc<WorkerStats>,
}

/// One served queue.
struct QueueState {
    name: String,
    /// Lease length asked for at dequeue.
    vt: Duration,
    /// Attempts after which a failure is final.
    max_attempts: i32,
    /// Woken by NOTIFY (and after every LISTEN reconnect).
    wake: Arc<Notify>,
}

/// What a fetch loop hands to the worker.
enum Fetched {
    Messages(Vec<(Message, OwnedSemaphorePermit)>),
    Fatal(Error),
}

impl Worker {
    /// A worker for `queues` (one name or several; connects now; the
    /// queues must exist when `run` starts).
    pub async fn new(config: &Config, queues: impl Queues, options: WorkerOptions) -> Result<Worker> {
        let queues = queues.queue_names();
        if queues.is_empty() {
            return Err(Error::invalid("a worker needs at least one queue"));
        }
        for (i, q) in queues.iter().enumerate() {
            validate_queue_name(q)?;
            if queues[..i].contains(q) {
                return Err(Error::invalid(format!("queue {q:?} is named twice")));
            }
        }
        options.check()?;
        let config = config.clone().with_pool_max_size(config.pool_max_size().max(3))?;
        Ok(Worker {
            db: Db::open(&config, None).await?,
            config,
            queues,
            options,
            stop: watch::channel(0).0,
            stats: Arc::new(WorkerStats::default()),
        })
    }

    /// The queues this worker serves.
    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    /// A handle that stops [`Worker::run`] / [`Worker::run_until`] from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// The worker's counters.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// Run `handler` until SIGINT (ctrl-c) or SIGTERM; a second signal stops at once.
    pub async fn run<F, Fut, R>(&self, handler: F) -> Result<()>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
        R: Serialize + Send + 'static,
    {
        let stop = self.stop_handle();
        let signals = tokio::spawn(async move {
            while shutdown_signal().await {
                log::info!("pgqrs worker: shutdown signal received");
                stop.stop();
            }
        });
        let result = self.run_inner(handler).await;
        signals.abort();
        result
    }

    /// Run `handler` until `shutdown` completes (then drain gracefully).
    pub async fn run_until<F, Fut, R, S>(&self, handler: F, shutdown: S) -> Result<()>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
        R: Serialize + Send + 'static,
        S: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop_handle();
        let waiter = tokio::spawn(async move {
            shutdown.await;
            stop.stop();
        });
        let result = self.run_inner(handler).await;
        waiter.abort();
        result
    }

    async fn run_inner<F, Fut, R>(&self, handler: F) -> Result<()>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
        R: Serialize + Send + 'static,
    {
        let opts = &self.options;
        let mut states = Vec::new();
        for name in &self.queues {
            let rows = self.db.fetch(Query::QueueGet, &[(name, Type::TEXT)], Some(name)).await?;
            let info = QueueInfo::from_row(rows.first().ok_or_else(|| Error::queue_not_found(name))?)?;
            states.push(Arc::new(QueueState {
                name: name.clone(),
                vt: opts
                    .visibility_timeout
                    .unwrap_or_else(|| Duration::from_secs_f64(info.visibility_timeout)),
                max_attempts: opts.max_attempts.map_or(info.max_attempts, |m| m.min(info.max_attempts)),
                wake: Arc::new(Notify::new()),
            }));
        }
        let listen = match (opts.listen, &opts.listen_dsn) {
            (false, _) => None,
            (true, Some(dsn)) => {
                let c = Config::from_dsn(dsn)?;
                Some((c.pg_config(), c.connector()?))
            }
            (true, None) => Some((self.config.pg_config(), self.config.connector()?)),
        };
        let worker_id = Arc::new(AtomicI64::new(register(&self.db, &self.queues).await?));
        log::info!(
            "pgqrs worker {} serving {} (concurrency {}, {})",
            worker_id.load(Ordering::Relaxed),
            self.queues.join(", "),
            opts.concurrency,
            if listen.is_some() { "LISTEN + polling" } else { "polling only" }
        );
        let handlers_running = Arc::new(AtomicUsize::new(0));
        let (completer, completer_handle, completer_rx) = Completer::new(
            self.db.clone(),
            opts.flush_interval,
            opts.flush_size,
            handlers_running.clone(),
            self.stats.clone(),
        );
        let mut completer_task = tokio::spawn(completer.run(completer_rx));
        let ctx = Arc::new(JobContext {
            handler,
            db: self.db.clone(),
            worker_id: worker_id.clone(),
            retry_base: opts.retry_base,
            retry_max: opts.retry_max,
            retry_jitter: opts.retry_jitter,
            stats: self.stats.clone(),
            running: Mutex::new(HashMap::new()),
            handlers_running,
            completer: completer_handle,
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let mut stop_rx = self.stop.subscribe();
        let mut background = JoinSet::new();
        if let Some((pg, connector)) = listen {
            let wakes = states.iter().map(|q| (q.name.clone(), q.wake.clone())).collect();
            background.spawn(listen::listen(
                pg,
                connector,
                self.config.schema().to_string(),
                wakes,
                stop_rx.clone(),
            ));
        }
        // Ended by `quit` between two statements (not aborted): a heartbeat
        // in flight must not land after worker_stop and undo it.
        let quit = Arc::new(Notify::new());
        let heartbeat_task = tokio::spawn(heartbeat(
            self.db.clone(),
            worker_id.clone(),
            self.queues.clone(),
            opts.clone(),
            stopping.clone(),
            quit.clone(),
        ));

        let slots = Arc::new(Semaphore::new(opts.concurrency));
        let (fetch_tx, mut fetch_rx) = mpsc::unbounded_channel();
        let mut fetchers = JoinSet::new();
        for q in &states {
            fetchers.spawn(fetch_loop(
                self.db.clone(),
                q.clone(),
                slots.clone(),
                worker_id.clone(),
                opts.batch_cap,
                opts.poll_interval,
                fetch_tx.clone(),
                stop_rx.clone(),
            ));
        }
        drop(fetch_tx);

        let mut jobs = JoinSet::new();
        let mut fatal: Option<Error> = None;
        loop {
            tokio::select! {
                _ = wait_level(&mut stop_rx, 1) => break,
                fetched = fetch_rx.recv() => match fetched {
                    Some(Fetched::Messages(items)) => {
                        for (msg, permit) in items {
                            let q = states.iter().find(|q| q.name == msg.queue).expect("a served queue").clone();
                            jobs.spawn(ctx.clone().process(q, msg, permit));
                        }
                    }
                    Some(Fetched::Fatal(e)) => {
                        fatal = Some(e);
                        break;
                    }
                    None => break,
                },
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            }
        }

        // Shutdown. The fetch loops end after their current dequeue; what it
        // brought in is given back (refunded: no handler started).
        stopping.store(true, Ordering::SeqCst);
        let now = *stop_rx.borrow() >= 2;
        let grace_end = Instant::now() + if now { Duration::ZERO } else { opts.shutdown_grace };
        log::info!(
            "pgqrs worker {} stopping: {} job(s) running",
            worker_id.load(Ordering::Relaxed),
            jobs.len()
        );
        let status_db = self.db.clone();
        let id = worker_id.load(Ordering::Relaxed);
        let stopping_status = tokio::spawn(async move {
            if let Err(e) = heartbeat_once(&status_db, id, "stopping").await {
                log::warn!("pgqrs worker {id}: could not record the stopping state: {e}");
            }
        });
        if !now {
            self.stop.send_modify(|level| *level = (*level).max(1));
        }
        let mut given_back = 0;
        loop {
            tokio::select! {
                fetched = fetch_rx.recv() => match fetched {
                    Some(Fetched::Messages(items)) => given_back += ctx.give_back(items),
                    Some(Fetched::Fatal(e)) => { fatal.get_or_insert(e); }
                    None => break,
                },
                _ = tokio::time::sleep_until(grace_end) => break,
                _ = wait_level(&mut stop_rx, 2) => break,
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            }
        }
        fetchers.abort_all();
        while fetchers.join_next().await.is_some() {}
        while let Ok(fetched) = fetch_rx.try_recv() {
            if let Fetched::Messages(items) = fetched {
                given_back += ctx.give_back(items);
            }
        }
        if given_back > 0 {
            log::info!("pgqrs worker: gave back {given_back} message(s) fetched but not started");
        }
        // Running handlers get the rest of the grace period.
        while !jobs.is_empty() {
            tokio::select! {
                _ = jobs.join_next() => {}
                _ = tokio::time::sleep_until(grace_end) => break,
                _ = wait_level(&mut stop_rx, 2) => break,
            }
        }
        let mut hard = *stop_rx.borrow() >= 2;
        let write_timeout = if hard {
            opts.shutdown_write_timeout.min(HARD_STOP_WRITE_TIMEOUT)
        } else {
            opts.shutdown_write_timeout
        };
        ctx.completer.hurry(Instant::now() + write_timeout);
        jobs.abort_all();
        while jobs.join_next().await.is_some() {}
        ctx.release_cut_off();
        ctx.completer.finish();
        loop {
            tokio::select! {
                _ = &mut completer_task => break,
                _ = wait_level(&mut stop_rx, 2), if !hard => {
                    hard = true;
                    ctx.completer.hurry(Instant::now() + HARD_STOP_WRITE_TIMEOUT);
                }
            }
        }
        background.abort_all();
        quit.notify_one();
        for task in [stopping_status, heartbeat_task] {
            let abort = task.abort_handle();
            if tokio::time::timeout(write_timeout, task).await.is_err() {
                abort.abort();
            }
        }
        let id = worker_id.load(Ordering::Relaxed);
        match tokio::time::timeout(
            write_timeout,
            self.db.fetch(Query::WorkerStop, &[(&id, Type::INT8)], None),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::warn!("pgqrs worker {id}: could not record the stop: {e}"),
            Err(_) => log::warn!("pgqrs worker {id}: could not record the stop within {write_timeout:?}"),
        }
        log::info!("pgqrs worker {id} stopped");
        match fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Wait for SIGINT or SIGTERM; false when signals cannot be received.
async fn shutdown_signal() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else { return false };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            r = term.recv() => r.is_some(),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

async fn wait_level(stop: &mut watch::Receiver<u8>, level: u8) {
    while *stop.borrow_and_update() < level {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn register(db: &Db, queues: &[String]) -> Result<i64> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string());
    let pid = std::process::id() as i32;
    let queues = queues.to_vec();
    let rows = db
        .fetch(
            Query::WorkerRegister,
            &[(&hostname, Type::TEXT), (&pid, Type::INT4), (&queues, Type::TEXT_ARRAY)],
            None,
        )
        .await?;
    col(&rows[0], "id")
}

/// Record a heartbeat; false when the row is gone (pruned while silent).
async fn heartbeat_once(db: &Db, id: i64, status: &str) -> Result<bool> {
    let status = status.to_string();
    let rows = db.fetch(Query::WorkerHeartbeat, &[(&id, Type::INT8), (&status, Type::TEXT)], None).await?;
    Ok(!rows.is_empty())
}

/// Heartbeat every `heartbeat_interval` and run `worker_reap` every
/// `reap_interval`, until `quit` is notified.
async fn heartbeat(
    db: Db,
    id: Arc<AtomicI64>,
    queues: Vec<String>,
    opts: WorkerOptions,
    stopping: Arc<AtomicBool>,
    quit: Arc<Notify>,
) {
    let ticker = |every: Duration| {
        let mut t = tokio::time::interval_at(Instant::now() + every, every);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    };
    let (mut beat, mut reap) = (ticker(opts.heartbeat_interval), ticker(opts.reap_interval));
    let mut reconnect = Reconnect::default();
    loop {
        let (what, result) = tokio::select! {
            _ = quit.notified() => return,
            _ = beat.tick() => {
                let status = if stopping.load(Ordering::SeqCst) { "stopping" } else { "running" };
                let result = match heartbeat_once(&db, id.load(Ordering::Relaxed), status).await {
                    Ok(true) => Ok(()),
                    Ok(false) => register(&db, &queues).await.map(|new| {
                        log::warn!("pgqrs worker: its row was pruned; registered again as worker {new}");
                        id.store(new, Ordering::Relaxed);
                    }),
                    Err(e) => Err(e),
                };
                ("heartbeat", result)
            }
            _ = reap.tick() => {
                let (dead, prune) = (opts.worker_dead_after.as_secs_f64(), opts.worker_prune_after.as_secs_f64());
                let result = db
                    .fetch(Query::WorkerReap, &[(&dead, Type::FLOAT8), (&prune, Type::FLOAT8)], None)
                    .await
                    .and_then(|rows| {
                        let (marked, pruned): (i64, i64) = (col(&rows[0], "marked_dead")?, col(&rows[0], "pruned")?);
                        if marked + pruned > 0 {
                            log::info!("pgqrs worker: reaping marked {marked} silent worker(s) dead, pruned {pruned}");
                        }
                        Ok(())
                    });
                ("worker_reap", result)
            }
        };
        match result {
            Ok(()) => {
                reconnect.succeeded();
            }
            Err(e) => {
                reconnect.failed();
                if reconnect.failures() == 1 {
                    log::warn!("pgqrs worker: {what} failed: {e}");
                } else {
                    log::debug!("pgqrs worker: {what} failed: {e}");
                }
            }
        }
    }
}

/// Lease up to `n` messages of `q` (again at once when every picked row was dead).
async fn dequeue(db: &Db, q: &QueueState, n: usize, worker_id: i64) -> Result<Vec<Message>> {
    let limit = n as i64;
    let vt = Some(q.vt.as_secs_f64()).filter(|v| *v > 0.0);
    let wid = Some(worker_id);
    let mut messages = Vec::new();
    for _ in 0..=DEQUEUE_DEAD_RETRIES {
        let rows = db
            .fetch(
                Query::MessageDequeue,
                &[(&q.name, Type::TEXT), (&limit, Type::INT8), (&vt, Type::FLOAT8), (&wid, Type::INT8)],
                Some(&q.name),
            )
            .await?;
        let dead;
        (messages, dead) = dequeue_result(&rows, &q.name)?;
        if dead > 0 {
            log::warn!("pgqrs worker: {dead} message(s) of {:?} had used up their attempts and went to the archive as dead", q.name);
        }
        if !messages.is_empty() || dead == 0 {
            break;
        }
    }
    Ok(messages)
}

/// One queue's fetch loop: wait for a free slot, take every free one (up to
/// `batch_cap`), dequeue that many; poll again at once after a full batch,
/// else after a NOTIFY or the poll interval. Ends at the first stop request
/// (after its current dequeue, whose messages the worker gives back).
#[allow(clippy::too_many_arguments)]
async fn fetch_loop(
    db: Db,
    q: Arc<QueueState>,
    slots: Arc<Semaphore>,
    worker_id: Arc<AtomicI64>,
    batch_cap: usize,
    poll_interval: Duration,
    out: mpsc::UnboundedSender<Fetched>,
    mut stop: watch::Receiver<u8>,
) {
    let mut reconnect = Reconnect::default();
    loop {
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = wait_level(&mut stop, 1) => return,
        };
        let mut permits = vec![first];
        while permits.len() < batch_cap {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let asked = permits.len();
        let messages = match dequeue(&db, &q, asked, worker_id.load(Ordering::Relaxed)).await {
            Ok(m) => m,
            Err(e) => {
                drop(permits);
                if matches!(e.kind(), ErrorKind::QueueNotFound | ErrorKind::SchemaNotInstalled) {
                    let _ = out.send(Fetched::Fatal(e));
                    return;
                }
                let wait = reconnect.failed();
                if reconnect.failures() == 1 {
                    log::warn!(
                        "pgqrs worker: dequeue from {:?} failed, polling again in {wait:?}: {e}",
                        q.name
                    );
                } else {
                    log::debug!(
                        "pgqrs worker: dequeue from {:?} failed, polling again in {wait:?}: {e}",
                        q.name
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = wait_level(&mut stop, 1) => return,
                }
            }
        };
        if reconnect.succeeded() {
            log::info!("pgqrs worker: dequeue from {:?} works again", q.name);
        }
        let got = messages.len();
        if got > 0 {
            let items = messages.into_iter().zip(permits.drain(..got)).collect();
            if out.send(Fetched::Messages(items)).is_err() {
                return;
            }
        }
        drop(permits);
        if got == asked {
            continue; // a full batch: more may be waiting
        }
        tokio::select! {
            _ = q.wake.notified() => {}
            _ = tokio::time::sleep(poll_interval) => {}
            _ = wait_level(&mut stop, 1) => return,
        }
    }
}

/// Everything a spawned job needs.
struct JobContext<F> {
    handler: F,
    db: Db,
    worker_id: Arc<AtomicI64>,
    retry_base: Duration,
    retry_max: Duration,
    retry_jitter: f64,
    stats: Arc<WorkerStats>,
    /// Messages whose handler is running, by lease: released if shutdown cuts them off.
    running: Mutex<HashMap<Uuid, i64>>,
    /// How many handlers run now (the completer flushes at once at zero).
    handlers_running: Arc<AtomicUsize>,
    completer: CompleterHandle,
}

/// What a written outcome counts as.
#[derive(Debug, Clone, Copy)]
enum Event {
    Completed,
    Retried,
    Dead,
}

/// Counts a job in flight (and its handler as running) until dropped, even
/// when the job is aborted at shutdown.
struct InFlight<'a> {
    stats: &'a WorkerStats,
    handlers: &'a AtomicUsize,
    handler_running: bool,
}

impl<'a> InFlight<'a> {
    fn new(stats: &'a WorkerStats, handlers: &'a AtomicUsize) -> Self {
        stats.in_flight.fetch_add(1, Ordering::SeqCst);
        handlers.fetch_add(1, Ordering::SeqCst);
        InFlight { stats, handlers, handler_running: true }
    }

    fn handler_done(&mut self) {
        if std::mem::take(&mut self.handler_running) {
            self.handlers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.handler_done();
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<F, Fut, R> JobContext<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    async fn process(self: Arc<Self>, q: Arc<QueueState>, msg: Message, permit: OwnedSemaphorePermit) {
        let lease = msg.lease.unwrap_or_default();
        self.running.lock().unwrap().insert(lease, msg.id);
        let mut guard = InFlight::new(&self.stats, &self.handlers_running);
        let outcome = self.run_handler(&msg, lease, q.vt).await;
        let (action, event) = self.decide(&q, &msg, outcome);
        // No await between these: a job cut off at shutdown is either still
        // in `running` (and released) or its outcome is with the completer.
        self.running.lock().unwrap().remove(&lease);
        guard.handler_done();
        let written = self.completer.submit(Settlement::new(msg.id, lease, action));
        let outcome = written.await.unwrap_or(Outcome::Unwritten);
        match outcome {
            Outcome::Ok => {
                let counter = match event {
                    Event::Completed => &self.stats.completed,
                    Event::Retried => &self.stats.retried,
                    Event::Dead => &self.stats.dead,
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
            Outcome::LeaseLost => {
                self.stats.lease_lost.fetch_add(1, Ordering::SeqCst);
                log::warn!(
                    "pgqrs worker: message {} (queue {:?}): lease lost before its outcome ({event:?}) \
                     was written; another consumer has it now",
                    msg.id,
                    q.name
                );
            }
            Outcome::NotFound => log::warn!(
                "pgqrs worker: message {} (queue {:?}) was gone before its outcome ({event:?}) was written",
                msg.id,
                q.name
            ),
            Outcome::Unwritten => {} // logged by the completer
        }
        drop(guard);
        drop(permit);
    }

    /// The handler's outcome, extending the lease every third of the
    /// visibility timeout while it runs.
    async fn run_handler(
        &self,
        msg: &Message,
        lease: Uuid,
        vt: Duration,
    ) -> std::result::Result<Value, JobError> {
        let fut = AssertUnwindSafe((self.handler)(msg.clone())).catch_unwind();
        tokio::pin!(fut);
        let every = (vt / 3).max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        let mut keeping = true;
        let out = loop {
            tokio::select! {
                out = &mut fut => break out,
                _ = ticker.tick(), if keeping => {
                    match self.extend(msg, lease, vt).await {
                        Ok(true) => {}
                        Ok(false) => {
                            log::warn!("pgqrs worker: lost the lease of message {} while its handler ran", msg.id);
                            keeping = false;
                        }
                        Err(e) => log::warn!("pgqrs worker: extending message {}: {e}", msg.id),
                    }
                }
            }
        };
        match out {
            Ok(Ok(r)) => serde_json::to_value(r).map_err(|e| JobError {
                message: format!("handler result is not JSON: {e}"),
                retry: Retry::Backoff,
                kind: "pgqrs.PayloadError",
            }),
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "handler panicked".to_string());
                Err(JobError { message: text, retry: Retry::Backoff, kind: "panic" })
            }
        }
    }

    /// Keep the lease for `vt` more; false when it was lost.
    async fn extend(&self, msg: &Message, lease: Uuid, vt: Duration) -> Result<bool> {
        let (ids, leases, secs) = (vec![msg.id], vec![lease], vt.as_secs_f64());
        let rows = self
            .db
            .fetch(
                Query::MessageExtend,
                &[(&ids, Type::INT8_ARRAY), (&leases, Type::UUID_ARRAY), (&secs, Type::FLOAT8)],
                Some(&msg.queue),
            )
            .await?;
        match rows.first() {
            Some(row) => Ok(col::<String>(row, "outcome")? == "ok"),
            None => Ok(false),
        }
    }

    /// What to write for the handler's `outcome`, and what it counts as once written.
    fn decide(
        &self,
        q: &QueueState,
        msg: &Message,
        outcome: std::result::Result<Value, JobError>,
    ) -> (Action, Event) {
        let max = self.db.config.max_payload_bytes();
        let failed = match outcome {
            Ok(Value::Null) => {
                return (Action::Archive { status: "completed", result: None, error: None }, Event::Completed)
            }
            Ok(value) => match encode(&value, "result", max) {
                Ok(result) => {
                    return (
                        Action::Archive { status: "completed", result: Some(result), error: None },
                        Event::Completed,
                    )
                }
                Err(e) => {
                    JobError { message: e.to_string(), retry: Retry::Backoff, kind: "pgqrs.PayloadError" }
                }
            },
            Err(e) => e,
        };
        let error = self.error_json(msg, &failed);
        if failed.retry == Retry::GiveUp || msg.attempts >= q.max_attempts {
            log::warn!(
                "pgqrs worker: message {} (queue {:?}) is dead after {} attempt(s): {}",
                msg.id,
                q.name,
                msg.attempts,
                failed.message
            );
            return (Action::Archive { status: "dead", result: None, error }, Event::Dead);
        }
        let delay = match failed.retry {
            Retry::After(d) => d,
            _ => backoff(self.retry_base, self.retry_max, self.retry_jitter, msg.attempts),
        };
        log::warn!(
            "pgqrs worker: message {} (queue {:?}) failed on attempt {}/{}, retrying in {delay:?}: {}",
            msg.id,
            q.name,
            msg.attempts,
            q.max_attempts,
            failed.message
        );
        (Action::Release { delay: delay.as_secs_f64(), error, refund: false }, Event::Retried)
    }

    /// The message's error record: the same fields as the Python worker's
    /// (Rust has no traceback to add); None if it cannot be stored.
    fn error_json(&self, msg: &Message, e: &JobError) -> Option<String> {
        let record = json!({
            "type": e.kind,
            "message": e.message,
            "attempt": msg.attempts,
            "worker_id": self.worker_id.load(Ordering::Relaxed),
        });
        encode(&record, "error", self.db.config.max_payload_bytes()).ok()
    }

    /// Give back messages fetched but not started: released at once, their
    /// attempt refunded. Returns how many.
    fn give_back(&self, items: Vec<(Message, OwnedSemaphorePermit)>) -> usize {
        let n = items.len();
        for (msg, _permit) in items {
            let action = Action::Release { delay: 0.0, error: None, refund: true };
            self.completer.submit_detached(Settlement::new(msg.id, msg.lease.unwrap_or_default(), action));
        }
        n
    }

    /// Release the messages of handlers cut off at the end of the grace
    /// period (their attempt counts: the handler ran).
    fn release_cut_off(&self) {
        let cut: Vec<(Uuid, i64)> = self.running.lock().unwrap().drain().collect();
        if cut.is_empty() {
            return;
        }
        let ids: Vec<i64> = cut.iter().map(|(_, id)| *id).collect();
        log::warn!(
            "pgqrs worker: releasing {} job(s) still running at the end of the grace period: {ids:?}",
            ids.len()
        );
        let record = json!({
            "type": "WorkerStopped",
            "message": "the worker stopped before the handler finished",
            "worker_id": self.worker_id.load(Ordering::Relaxed),
        });
        let error = encode(&record, "error", self.db.config.max_payload_bytes()).ok();
        for (lease, id) in cut {
            let action = Action::Release { delay: 0.0, error: error.clone(), refund: false };
            self.completer.submit_detached(Settlement::new(id, lease, action));
        }
    }
}
