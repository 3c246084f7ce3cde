//! Worker: run a handler over one queue, with bounded concurrency, retries
//! with backoff, lease extension, NOTIFY wake-ups plus polling, and graceful
//! shutdown.
//!
//! ```no_run
//! use pgqrs::{Config, JobError, Message, Worker, WorkerOptions};
//!
//! # async fn run() -> Result<(), pgqrs::Error> {
//! let config = Config::from_env()?;
//! let worker = Worker::new(&config, "tasks", WorkerOptions::default()).await?;
//! // Runs until SIGINT or SIGTERM; running jobs get `shutdown_grace` to finish.
//! worker
//!     .run(|msg: Message| async move {
//!         let to = msg.payload["to"].as_str().ok_or_else(|| JobError::give_up("no recipient"))?;
//!         println!("sending to {to}");
//!         Ok::<_, JobError>(())
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! A handler that returns `Ok(value)` has its message archived as
//! `completed` with `value` (any `Serialize`, `()` for none) as the result.
//! One that returns `Err` (or panics) has its message released with an
//! exponential backoff plus jitter and the error recorded; after the queue's
//! `max_attempts` deliveries (or at once, for [`JobError::give_up`]) the
//! message goes to the archive as `dead`. While a handler runs, its lease is
//! extended every third of the visibility timeout, so long jobs are not
//! redelivered. If the worker dies, its messages come back when their leases
//! expire: correctness needs no reaper.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::config::Config;
use crate::consumer::{Consumer, MessageRef};
use crate::db::{col, Db};
use crate::error::{Error, ErrorKind, Result};
use crate::message::{Message, QueueInfo};
use crate::queries::Query;
use crate::validate::validate_queue_name;

/// Handlers running at once, by default.
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
/// Longest pause after repeated database errors in the fetch loop.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(30);
/// Tries for writing a completion or failure before giving up on it (the
/// lease then expires and the message is delivered again: nothing is lost).
const SETTLE_TRIES: u32 = 5;

/// How a [`Worker`] runs. `WorkerOptions::default()` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Handlers running at once ([`DEFAULT_CONCURRENCY`]).
    pub concurrency: usize,
    /// Most messages one fetch leases ([`DEFAULT_BATCH_CAP`]).
    pub batch_cap: usize,
    /// Poll this often when no NOTIFY arrives ([`DEFAULT_POLL_INTERVAL`]).
    pub poll_interval: Duration,
    /// Lease length; None: the queue's visibility timeout.
    pub visibility_timeout: Option<Duration>,
    /// Deliveries before `dead`; None: the queue's max_attempts.
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
        }
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
    /// Handlers running now.
    pub in_flight: AtomicU64,
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

/// A worker for one queue. See the [module docs](self). A Worker runs once:
/// after it has been stopped, make a new one to run again.
pub struct Worker {
    db: Db,
    config: Config,
    queue: String,
    options: WorkerOptions,
    stop: watch::Sender<u8>,
    stats: Arc<WorkerStats>,
}

impl Worker {
    /// A worker for `queue` (connects now; the queue must exist when `run` starts).
    pub async fn new(config: &Config, queue: &str, options: WorkerOptions) -> Result<Worker> {
        validate_queue_name(queue)?;
        if options.concurrency < 1 || options.batch_cap < 1 {
            return Err(Error::invalid(format!(
                "concurrency ({}) and batch_cap ({}) must be >= 1",
                options.concurrency, options.batch_cap
            )));
        }
        if options.poll_interval.is_zero() {
            return Err(Error::invalid("poll_interval must be > 0"));
        }
        if !(0.0..=1.0).contains(&options.retry_jitter) {
            return Err(Error::invalid(format!(
                "retry_jitter is a fraction from 0 to 1, got {}",
                options.retry_jitter
            )));
        }
        let config = config.clone().with_pool_max_size(config.pool_max_size().max(3))?;
        Ok(Worker {
            db: Db::open(&config, None).await?,
            config,
            queue: queue.to_string(),
            options,
            stop: watch::channel(0).0,
            stats: Arc::new(WorkerStats::default()),
        })
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
        let queue_s = self.queue.clone();
        let rows = self.db.fetch(Query::QueueGet, &[(&queue_s, Type::TEXT)], Some(&self.queue)).await?;
        let info = QueueInfo::from_row(rows.first().ok_or_else(|| Error::queue_not_found(&self.queue))?)?;
        let vt = self
            .options
            .visibility_timeout
            .unwrap_or_else(|| Duration::from_secs_f64(info.visibility_timeout));
        let listen_config = if self.options.listen { Some(self.listen_config()?) } else { None };
        let worker_id = self.register().await?;
        let job = Arc::new(JobContext {
            handler,
            max_attempts: self.options.max_attempts.unwrap_or(info.max_attempts),
            vt,
            retry_base: self.options.retry_base,
            retry_max: self.options.retry_max,
            retry_jitter: self.options.retry_jitter,
            worker_id,
            stats: self.stats.clone(),
            running: Mutex::new(HashMap::new()),
        });
        log::info!("pgqrs worker {worker_id} started on queue {:?}", self.queue);
        let consumer = Arc::new(
            Consumer::with_pool(&self.config, &self.queue, self.db.pool.clone())
                .await?
                .with_worker_id(Some(worker_id)),
        );
        let wake = Arc::new(Notify::new());
        let mut stop_rx = self.stop.subscribe();
        let mut background = JoinSet::new();
        if let Some(listen_config) = listen_config {
            background.spawn(listen(
                listen_config,
                self.config.schema().to_string(),
                self.queue.clone(),
                wake.clone(),
                stop_rx.clone(),
            ));
        }
        background.spawn(heartbeat(
            self.db.clone(),
            worker_id,
            self.options.heartbeat_interval,
            stop_rx.clone(),
        ));

        let slots = Arc::new(Semaphore::new(self.options.concurrency));
        let mut jobs = JoinSet::new();
        let mut error_backoff = self.options.poll_interval;
        let mut fatal: Option<Error> = None;
        'fetch: while *stop_rx.borrow() == 0 {
            // Wait for one free slot, then take every other free one (up to the cap).
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("semaphore closed"),
                _ = stop_rx.changed() => continue 'fetch,
                Some(_) = jobs.join_next(), if !jobs.is_empty() => continue 'fetch,
            };
            let mut permits = vec![first];
            while permits.len() < self.options.batch_cap {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let fetched = consumer.dequeue_batch_with(permits.len(), Some(vt)).await;
            let messages = match fetched {
                Ok(m) => {
                    error_backoff = self.options.poll_interval;
                    m
                }
                Err(e) => {
                    log::warn!("pgqrs worker: dequeue from {:?} failed: {e}", self.queue);
                    drop(permits);
                    if e.kind() == ErrorKind::QueueNotFound || e.kind() == ErrorKind::SchemaNotInstalled {
                        fatal = Some(e);
                        break 'fetch;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(error_backoff) => {}
                        _ = stop_rx.changed() => {}
                    }
                    error_backoff = (error_backoff * 2).min(MAX_ERROR_BACKOFF);
                    continue;
                }
            };
            let got = messages.len();
            for (msg, permit) in messages.into_iter().zip(permits.drain(..got)) {
                let (job, consumer) = (job.clone(), consumer.clone());
                jobs.spawn(async move {
                    job.process(&consumer, msg).await;
                    drop(permit);
                });
            }
            if got == 0 {
                drop(permits);
                // Idle: sleep until a NOTIFY, the poll interval, or a stop.
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(self.options.poll_interval) => {}
                    _ = stop_rx.changed() => {}
                }
            }
            // Reap finished tasks so the set does not grow.
            while jobs.try_join_next().is_some() {}
        }

        // Shutdown: let running handlers finish within the grace period.
        let _ = self.heartbeat_status(worker_id, "stopping").await;
        let deadline = tokio::time::sleep(self.options.shutdown_grace);
        tokio::pin!(deadline);
        while !jobs.is_empty() {
            tokio::select! {
                _ = jobs.join_next() => {}
                _ = &mut deadline => break,
                _ = wait_level(&mut stop_rx, 2) => break,
            }
        }
        if !jobs.is_empty() {
            jobs.abort_all();
            while jobs.join_next().await.is_some() {}
            let held: Vec<MessageRef> = job
                .running
                .lock()
                .unwrap()
                .drain()
                .map(|(id, lease)| MessageRef::with_lease(id, lease))
                .collect();
            log::warn!("pgqrs worker: releasing {} message(s) still running at shutdown", held.len());
            if !held.is_empty() {
                let err = json!({
                    "type": "WorkerStopped",
                    "message": "the worker stopped before the handler finished",
                    "worker_id": worker_id,
                });
                let errors = vec![err; held.len()];
                if let Err(e) = consumer.release_batch_with(held, Duration::ZERO, Some(&errors)).await {
                    log::warn!("pgqrs worker: release at shutdown: {e}");
                }
            }
            job.stats.in_flight.store(0, Ordering::Relaxed);
        }
        background.abort_all();
        let id = worker_id;
        let stopped = self.db.fetch(Query::WorkerStop, &[(&id, Type::INT8)], None).await;
        log::info!("pgqrs worker {worker_id} stopped");
        match fatal {
            Some(e) => Err(e),
            None => stopped.map(drop),
        }
    }

    fn listen_config(&self) -> Result<tokio_postgres::Config> {
        match &self.options.listen_dsn {
            Some(dsn) => Ok(Config::from_dsn(dsn)?.pg_config()),
            None => Ok(self.config.pg_config()),
        }
    }

    async fn register(&self) -> Result<i64> {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".to_string());
        let pid = std::process::id() as i32;
        let queues = vec![self.queue.clone()];
        let rows = self
            .db
            .fetch(
                Query::WorkerRegister,
                &[(&hostname, Type::TEXT), (&pid, Type::INT4), (&queues, Type::TEXT_ARRAY)],
                None,
            )
            .await?;
        col(&rows[0], "id")
    }

    async fn heartbeat_status(&self, id: i64, status: &str) -> Result<()> {
        heartbeat_once(&self.db, id, status).await
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

async fn heartbeat_once(db: &Db, id: i64, status: &str) -> Result<()> {
    let status = status.to_string();
    db.fetch(Query::WorkerHeartbeat, &[(&id, Type::INT8), (&status, Type::TEXT)], None).await.map(drop)
}

async fn heartbeat(db: Db, id: i64, every: Duration, mut stop: watch::Receiver<u8>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = heartbeat_once(&db, id, "running").await {
            log::warn!("pgqrs worker {id}: heartbeat failed: {e}");
        }
    }
}

async fn wait_level(stop: &mut watch::Receiver<u8>, level: u8) {
    while *stop.borrow_and_update() < level {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Keep a LISTEN connection and turn notifications for `queue` into wake-ups.
/// Only a hint: on any failure the worker keeps polling, and reconnects later.
async fn listen(
    pg: tokio_postgres::Config,
    schema: String,
    queue: String,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<u8>,
) {
    // The schema name is validated ([a-z_][a-z0-9_]*), so quoting is enough.
    let channel = format!("LISTEN \"{schema}.enqueue\"");
    let mut backoff = Duration::from_secs(1);
    loop {
        match pg.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                        match msg {
                            Ok(AsyncMessage::Notification(n)) => {
                                let _ = tx.send(n.payload().to_string());
                            }
                            Ok(_) => {}
                            Err(e) => {
                                log::debug!("pgqrs worker: LISTEN connection: {e}");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&channel).await {
                    Ok(()) => {
                        backoff = Duration::from_secs(1);
                        wake.notify_one(); // poll again after every reconnect
                        loop {
                            tokio::select! {
                                n = rx.recv() => match n {
                                    Some(q) if q == queue => wake.notify_one(),
                                    Some(_) => {}
                                    None => break,
                                },
                                _ = stop.changed() => { driver.abort(); return; }
                            }
                        }
                    }
                    Err(e) => log::warn!("pgqrs worker: LISTEN failed (polling only): {e}"),
                }
                driver.abort();
            }
            Err(e) => log::warn!("pgqrs worker: LISTEN connection failed (polling only): {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_ERROR_BACKOFF);
    }
}

/// Everything a spawned job needs.
struct JobContext<F> {
    handler: F,
    max_attempts: i32,
    vt: Duration,
    retry_base: Duration,
    retry_max: Duration,
    retry_jitter: f64,
    worker_id: i64,
    stats: Arc<WorkerStats>,
    /// Messages whose handler is running: released if shutdown cuts them off.
    running: Mutex<HashMap<i64, Uuid>>,
}

impl<F, Fut, R> JobContext<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    async fn process(&self, consumer: &Consumer, msg: Message) {
        let lease = msg.lease.unwrap_or_default();
        self.running.lock().unwrap().insert(msg.id, lease);
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let outcome = self.run_handler(consumer, &msg).await;
        self.settle(consumer, &msg, outcome).await;
        self.running.lock().unwrap().remove(&msg.id);
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The handler's outcome, extending the lease every third of the
    /// visibility timeout while it runs.
    async fn run_handler(&self, consumer: &Consumer, msg: &Message) -> std::result::Result<Value, JobError> {
        let fut = AssertUnwindSafe((self.handler)(msg.clone())).catch_unwind();
        tokio::pin!(fut);
        let every = (self.vt / 3).max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut keeping = true;
        let out = loop {
            tokio::select! {
                out = &mut fut => break out,
                _ = ticker.tick(), if keeping => {
                    match consumer.extend(msg, self.vt).await {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::LeaseExpired => {
                            log::warn!("pgqrs worker: lost the lease of message {} while its handler ran", msg.id);
                            keeping = false;
                        }
                        Err(e) => log::warn!("pgqrs worker: extending message {}: {e}", msg.id),
                    }
                }
            }
        };
        match out {
            Ok(Ok(r)) => serde_json::to_value(r)
                .map_err(|e| JobError::give_up(format!("handler result is not JSON: {e}"))),
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

    async fn settle(
        &self,
        consumer: &Consumer,
        msg: &Message,
        outcome: std::result::Result<Value, JobError>,
    ) {
        let mut tries = 0;
        loop {
            tries += 1;
            let result = match &outcome {
                Ok(value) => {
                    consumer.archive_with(msg, "completed", value).await.map(|_| &self.stats.completed)
                }
                Err(e) if e.retry == Retry::GiveUp || msg.attempts >= self.max_attempts => {
                    let error = self.error_json(msg, e);
                    consumer
                        .archive_batch_with([msg], "dead", None, Some(std::slice::from_ref(&error)))
                        .await
                        .map(|_| &self.stats.dead)
                }
                Err(e) => {
                    let delay = match e.retry {
                        Retry::After(d) => d,
                        _ => backoff(self.retry_base, self.retry_max, self.retry_jitter, msg.attempts),
                    };
                    let error = self.error_json(msg, e);
                    consumer.release_with(msg, delay, Some(&error)).await.map(|_| &self.stats.retried)
                }
            };
            match result {
                Ok(counter) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) if e.is_lease_error() => {
                    log::warn!("pgqrs worker: message {}: {e}", msg.id);
                    return;
                }
                Err(e) if tries < SETTLE_TRIES => {
                    log::warn!("pgqrs worker: settling message {} failed, retrying: {e}", msg.id);
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(tries)).await;
                }
                Err(e) => {
                    log::error!(
                        "pgqrs worker: could not settle message {} ({e}); it is redelivered when its lease expires",
                        msg.id
                    );
                    return;
                }
            }
        }
    }

    /// What is stored as the message's error: the same fields as the Python
    /// worker's record (Rust has no traceback to add).
    fn error_json(&self, msg: &Message, e: &JobError) -> Value {
        json!({
            "type": e.kind,
            "message": e.message,
            "attempt": msg.attempts,
            "worker_id": self.worker_id,
        })
    }
}

/// Delay after failed attempt number `attempts` (1 for the first):
/// `base * 2^(attempts-1)`, capped at `max`, spread by +-`jitter` (as Python's `Backoff`).
fn backoff(base: Duration, max: Duration, jitter: f64, attempts: i32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).clamp(0, 30) as u32));
    let spread = 1.0 + jitter * (2.0 * random_fraction() - 1.0);
    exp.min(max).mul_f64(spread).min(max)
}

fn random_fraction() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempts in 1..=10 {
            let full = (base * 2u32.pow(attempts as u32 - 1)).min(max);
            assert_eq!(backoff(base, max, 0.0, attempts), full);
            let d = backoff(base, max, 0.25, attempts);
            assert!(d >= full.mul_f64(0.75) && d <= full.mul_f64(1.25).min(max), "{attempts}: {d:?}");
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| backoff(base, max, 0.25, 5)).collect();
        assert!(samples.len() > 1, "jitter varies the delay");
    }
}
