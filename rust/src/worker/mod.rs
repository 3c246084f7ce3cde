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
//! // Runs until SIGINT or SIGTERM; running jobs get `grace_period` to finish.
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
//! with tasks ([`Worker::task`], [`crate::task`]) each message naming a task
//! goes to that task's typed handler instead, and [`Worker::run_tasks`] runs
//! tasks alone.
//! `concurrency` bounds the handlers running at once, shared by all the
//! queues ([`WorkerOptions::queue_settings`] gives a queue its own, lower
//! limit, visibility timeout or max_attempts: the Python worker's
//! per-handler options). A handler's slot is free again as soon as it
//! returns: its outcome (archive or release) waits in the completion backlog
//! to be written, and no outcome is dropped. The worker holds at most
//! `concurrency + completion_backlog` messages leased (running, or waiting
//! for their outcome to be written; `completion_backlog` defaults to
//! [`DEFAULT_COMPLETION_BACKLOG`], 200): when it holds that many, fetching
//! waits until writes catch up; `completion_backlog: 0` keeps a slot until
//! its outcome is written. Each queue has its own fetch loop: one dequeue
//! statement takes as many messages as there are free slots (up to
//! `batch_size`). While some of a queue's handlers still run, it waits until
//! a quarter of its slots are free ([`DEFAULT_FETCH_BATCH_FRACTION`]) or
//! 2 ms have passed ([`DEFAULT_FETCH_DELAY`]), so that one round trip brings
//! several messages; a queue with nothing running fetches at once.
//!
//! A dequeue may also take messages beyond the free slots
//! ([`WorkerOptions::prefetch`]): they wait, leased (their leases extended
//! like the others) and counted under the held bound, and start as slots
//! free up, before the queue's next dequeue. [`Prefetch::Auto`] (the
//! default, as in Python) takes what the queue's handlers are expected to
//! start within [`DEFAULT_PREFETCH_HORIZON`] (2 ms), from the running average
//! of their durations, at most [`DEFAULT_PREFETCH_PER_SLOT`] per slot and
//! none before one has returned; those still waiting
//! [`DEFAULT_PREFETCH_MAX_WAIT`] (0.5 s) after their dequeue are given back
//! (attempt refunded) for any worker to take, and the queue fetches nothing
//! ahead until its handlers prove faster. [`Prefetch::Fixed`] fixes the
//! number waiting in all (0: a message is leased only when a handler can
//! start it).
//!
//! A handler that returns `Ok(value)` has its message archived as
//! `completed` with `value` (any `Serialize`, `()` for none) as the result.
//! One that returns `Err` (or panics) has its message released after a
//! [`Backoff`] delay (exponential, plus jitter) and the error recorded; after the queue's
//! `max_attempts` deliveries (or at once, for [`JobError::give_up`]) the
//! message goes to the archive as `dead`. That choice and the delay are made
//! in SQL, by `message_fail`, the same for the Python worker. Outcomes are written in batches
//! (at once when no handler runs): the archives (and releases, and failures) of jobs
//! finishing within `flush_interval` share one statement, at most
//! `flush_size` rows, each row still fenced by its lease;
//! a write that fails on the connection is retried until it succeeds (a
//! stopping worker gives up after `shutdown_write_timeout`, with an error log
//! naming the messages, which come back when their leases expire).
//!
//! While a handler runs, its lease is extended by a whole visibility timeout
//! once `lease_extend_at` (half) of it has passed, the leases due at the
//! same time together in one `message_extend` statement, so long jobs are
//! not redelivered. If the worker dies, its
//! messages come back when their leases expire: correctness needs no reaper.
//! Still, every `reap_interval` each worker runs `worker_reap`, which marks
//! workers that stopped heartbeating as dead and prunes old rows.
//!
//! [`Worker::stats`] gives counters to read while it runs, and
//! [`Worker::subscribe`] a stream of per-job [`JobEvent`]s (started,
//! completed, failed, retried, dead, lease lost), as in Python.
//!
//! On shutdown the worker stops fetching, gives back what a dequeue brought
//! in after the stop and the prefetched messages still waiting (with the
//! attempt refunded: no handler started), lets
//! running handlers finish within `grace_period`, then releases the
//! messages of those still running (their attempt counts), writes the
//! outcomes it holds and marks itself stopped.
//!
//! The files of this module are those of the Python worker (`pgqrs/_worker/`),
//! one responsibility each: `options` and `defaults` (generated from
//! `sql/worker_defaults.json`, as Python's), `runtime` (start, serve,
//! shutdown), `shutdown` (its phases), `jobs` (the job table and its
//! states), `outcome` (the pure outcome decision), `slots` (permits),
//! `fetcher`, `prefetch`, `completer`, `leases`, `heartbeat`, `listener`,
//! `events`, `handlers` and `reconnect`.

mod completer;
mod defaults;
mod events;
mod fetcher;
mod handlers;
mod heartbeat;
mod jobs;
mod leases;
pub(crate) mod listener;
mod options;
mod outcome;
mod prefetch;
mod reconnect;
mod runtime;
mod schedules;
mod shutdown;
mod slots;

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

pub use self::defaults::*;
pub use self::events::{JobEvent, JobEventKind, WorkerStats, DEFAULT_EVENT_CAPACITY};
pub use self::options::{
    Backoff, Prefetch, QueueSettings, Queues, WorkerOptions, DEFAULT_PREFETCH, MAX_COMPLETION_BACKLOG,
};
use self::handlers::TaskRegistry;
pub use self::outcome::JobError;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::metrics::WorkerMetrics;
use crate::task::{Task, TaskHandler};
use crate::validate::validate_queue_name;

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
    events: broadcast::Sender<JobEvent>,
    /// The tasks registered with [`Worker::task`].
    tasks: TaskRegistry,
    /// OpenTelemetry instruments (feature `otel`; nothing without it).
    metrics: WorkerMetrics,
    /// Declared with `schedule`, upserted at start.
    schedules: Vec<crate::schedule::ScheduleSpec>,
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
        if let Some(other) = options.queue_settings.keys().find(|q| !queues.contains(q)) {
            return Err(Error::invalid(format!(
                "queue_settings names queue {other:?}, which this worker does not serve ({queues:?})"
            )));
        }
        let config = config.clone().with_pool_max_size(config.pool_max_size().max(3));
        Ok(Worker {
            db: Db::open(&config, None).await?,
            config,
            queues,
            options,
            stop: watch::channel(0).0,
            stats: Arc::new(WorkerStats::default()),
            events: broadcast::channel(DEFAULT_EVENT_CAPACITY).0,
            tasks: TaskRegistry::default(),
            metrics: WorkerMetrics::default(),
            schedules: Vec::new(),
        })
    }

    /// Declare a schedule (docs/schedules.md): checked now, upserted when the
    /// worker starts (restarting, or many workers declaring it, changes
    /// nothing; a changed declaration replaces the stored one). The worker
    /// then fires every due schedule with the other workers that do: each
    /// slot is enqueued once.
    pub fn schedule(&mut self, schedule: crate::schedule::Schedule) -> Result<()> {
        let spec = schedule.spec(self.config.max_payload_bytes())?;
        if self.schedules.iter().any(|s| s.name == spec.name) {
            return Err(Error::invalid(format!("schedule {:?} is declared twice on this worker", spec.name)));
        }
        self.schedules.push(spec);
        Ok(())
    }

    /// The queues this worker serves.
    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    /// A handle that stops [`Worker::run`] / [`Worker::run_until`] from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// The worker's counters (Python's `worker.counters`).
    pub fn counters(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// The worker's counters: the same as [`Worker::counters`].
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// Record the worker's metrics on `provider` (feature `otel`) instead
    /// of the global meter provider: the instruments of Python's
    /// `pgqrs.otel` (docs/telemetry.md).
    #[cfg(feature = "otel")]
    pub fn with_meter_provider<P>(mut self, provider: &P) -> Worker
    where
        P: opentelemetry::metrics::MeterProvider + ?Sized,
    {
        self.metrics = WorkerMetrics::with_provider(provider);
        self
    }

    /// Per-job events from now on (started, completed, failed, retried,
    /// dead, lease lost); subscribe before `run` to see them all.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Run task `T` with `handler` (any `Fn(T, Message) -> impl Future<Output
    /// = Result<R, JobError>>`): the messages whose `pgqrs-task` header is
    /// [`Task::NAME`] get their payload decoded into `T` and go to `handler`
    /// (see [`crate::task`]). [`Task::QUEUE`] must be one of the worker's
    /// queues (checked at run, as a name registered twice).
    pub fn task<T: Task, H: TaskHandler<T>>(&mut self, handler: H) -> &mut Worker {
        self.tasks.add::<T, H>(handler);
        self
    }

    /// Run `handler` until SIGINT (ctrl-c) or SIGTERM; a second signal stops at once.
    /// With tasks ([`Worker::task`]), `handler` gets the messages that name no task.
    pub async fn run<F, Fut, R>(&self, handler: F) -> Result<()>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.run_until(handler, signals(self.stop_handle())).await
    }

    /// Run `handler` until `shutdown` completes (then drain gracefully).
    /// With tasks ([`Worker::task`]), `handler` gets the messages that name no task.
    pub async fn run_until<F, Fut, R, S>(&self, handler: F, shutdown: S) -> Result<()>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
        R: Serialize + Send + 'static,
        S: Future<Output = ()> + Send + 'static,
    {
        if self.tasks.is_empty() {
            self.serve(handler, shutdown).await
        } else {
            self.tasks.check(&self.queues)?;
            self.serve(self.tasks.clone().router(Some(handler)), shutdown).await
        }
    }

    /// Run the tasks registered with [`Worker::task`] until SIGINT or
    /// SIGTERM. A message that names no task goes to the archive as `dead`.
    pub async fn run_tasks(&self) -> Result<()> {
        self.run_tasks_until(signals(self.stop_handle())).await
    }

    /// Run the tasks until `shutdown` completes (then drain gracefully).
    pub async fn run_tasks_until<S>(&self, shutdown: S) -> Result<()>
    where
        S: Future<Output = ()> + Send + 'static,
    {
        if self.tasks.is_empty() {
            return Err(Error::invalid("run_tasks needs at least one task: register them with Worker::task"));
        }
        self.tasks.check(&self.queues)?;
        self.serve(self.tasks.clone().router(None::<NoPlainHandler>), shutdown).await
    }

    async fn serve<F, Fut, R, S>(&self, handler: F, shutdown: S) -> Result<()>
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
        let result = runtime::run(self, handler).await;
        waiter.abort();
        result
    }
}

/// The plain handler of a worker that runs only tasks: none.
type NoPlainHandler = fn(Message) -> std::future::Ready<std::result::Result<(), JobError>>;

/// Stop steps on SIGINT/SIGTERM (each signal one step); pending forever when
/// signals cannot be received.
async fn signals(stop: StopHandle) {
    while shutdown_signal().await {
        log::info!("pgqrs worker: shutdown signal received");
        stop.stop();
    }
    std::future::pending::<()>().await
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

/// Wait until the stop level (1: graceful, 2: at once) reaches `level`.
async fn wait_level(stop: &mut watch::Receiver<u8>, level: u8) {
    while *stop.borrow_and_update() < level {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
