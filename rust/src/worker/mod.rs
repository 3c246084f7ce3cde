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
//! One handler serves every queue of the worker (`msg.queue` says which).
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
//! `batch_cap`). While some of a queue's handlers still run, it waits until
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
//! One that returns `Err` (or panics) has its message released with an
//! exponential backoff plus jitter and the error recorded; after the queue's
//! `max_attempts` deliveries (or at once, for [`JobError::give_up`]) the
//! message goes to the archive as `dead`. Outcomes are written in batches
//! (at once when no handler runs): the archives (and releases) of jobs
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
//! running handlers finish within `shutdown_grace`, then releases the
//! messages of those still running (their attempt counts), writes the
//! outcomes it holds and marks itself stopped.

mod backoff;
mod completer;
mod events;
mod fetch;
mod heartbeat;
mod job;
mod leases;
mod listen;
mod options;
mod prefetch;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_postgres::types::Type;

pub use self::backoff::{RECONNECT_MAX, RECONNECT_MIN};
pub use self::events::{JobEvent, JobEventKind, DEFAULT_EVENT_CAPACITY};
use self::completer::Completer;
use self::fetch::{Fetched, Fetcher, QueueState};
use self::heartbeat::{heartbeat, heartbeat_once, register};
use self::job::JobContext;
use self::leases::LeaseKeeper;
pub use self::job::JobError;
use self::options::HARD_STOP_WRITE_TIMEOUT;
use self::prefetch::{Ahead, Prefetcher};
pub use self::options::*;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::message::{Message, QueueInfo};
use crate::queries::Query;
use crate::validate::validate_queue_name;

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
    /// Messages dequeued ahead of a free slot (see [`WorkerOptions::prefetch`]).
    pub prefetched: AtomicU64,
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
    events: broadcast::Sender<JobEvent>,
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
        let config = config.clone().with_pool_max_size(config.pool_max_size().max(3))?;
        Ok(Worker {
            db: Db::open(&config, None).await?,
            config,
            queues,
            options,
            stop: watch::channel(0).0,
            stats: Arc::new(WorkerStats::default()),
            events: broadcast::channel(DEFAULT_EVENT_CAPACITY).0,
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

    /// Per-job events from now on (started, completed, failed, retried,
    /// dead, lease lost); subscribe before `run` to see them all.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
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
            let own = opts.queue_settings.get(name).cloned().unwrap_or_default();
            let max_attempts = own.max_attempts.or(opts.max_attempts);
            let limit = own.concurrency.unwrap_or(opts.concurrency).min(opts.concurrency);
            states.push(Arc::new(QueueState {
                name: name.clone(),
                vt: own
                    .visibility_timeout
                    .or(opts.visibility_timeout)
                    .unwrap_or_else(|| Duration::from_secs_f64(info.visibility_timeout)),
                max_attempts: max_attempts.map_or(info.max_attempts, |m| m.min(info.max_attempts)),
                wake: Arc::new(Notify::new()),
                slots: (limit < opts.concurrency).then(|| Arc::new(Semaphore::new(limit))),
                min_batch: QueueState::min_batch(limit, opts.concurrency),
                active: Arc::new(AtomicUsize::new(0)),
                ahead: Ahead::new(limit),
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
        let worker_id = Arc::new(AtomicI64::new(register(&self.db, &self.queues, listen.is_some()).await?));
        log::info!(
            "pgqrs worker {} serving {} (concurrency {}, completion backlog {}, {})",
            worker_id.load(Ordering::Relaxed),
            self.queues.join(", "),
            opts.concurrency,
            opts.completion_backlog,
            if listen.is_some() { "LISTEN + polling" } else { "polling only" }
        );
        let (completer, completer_handle, completer_rx) =
            Completer::new(self.db.clone(), opts.flush_interval, opts.flush_size, self.stats.clone());
        let mut completer_task = tokio::spawn(completer.run(completer_rx));
        let keeper =
            Arc::new(LeaseKeeper::new(self.db.clone(), opts.lease_extend_at, opts.lease_check_interval));
        let k = keeper.clone();
        let keeper_task = tokio::spawn(async move { k.run().await });
        let ctx = Arc::new(JobContext {
            keeper,
            events: self.events.clone(),
            handler,
            db: self.db.clone(),
            worker_id: worker_id.clone(),
            retry_base: opts.retry_base,
            retry_max: opts.retry_max,
            retry_jitter: opts.retry_jitter,
            stats: self.stats.clone(),
            tracked: Mutex::new(HashMap::new()),
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

        let (fetch_tx, mut fetch_rx) = mpsc::unbounded_channel();
        let fetcher = Arc::new(Fetcher {
            db: self.db.clone(),
            running: Arc::new(Semaphore::new(opts.concurrency)),
            held: Arc::new(Semaphore::new(opts.concurrency + opts.completion_backlog)),
            worker_id: worker_id.clone(),
            batch_cap: opts.batch_cap,
            poll_interval: opts.poll_interval,
            stats: self.stats.clone(),
            keeper: ctx.keeper.clone(),
            prefetcher: Prefetcher::new(opts.prefetch),
            out: fetch_tx,
        });
        let mut fetchers = JoinSet::new();
        for q in &states {
            fetchers.spawn(fetcher.clone().fetch_loop(q.clone(), stop_rx.clone()));
        }
        // The loops hold the only senders: the channel closes when they end.
        drop(fetcher);

        let mut jobs = JoinSet::new();
        let mut fatal: Option<Error> = None;
        loop {
            tokio::select! {
                _ = wait_level(&mut stop_rx, 1) => break,
                fetched = fetch_rx.recv() => match fetched {
                    Some(Fetched::Messages(items)) => {
                        for (msg, permits) in items {
                            let q = states.iter().find(|q| q.name == msg.queue).expect("a served queue").clone();
                            // Tracked before the task runs: one aborted before its first
                            // step is still released at shutdown.
                            ctx.track(&msg, permits.held);
                            jobs.spawn(ctx.clone().process(q, msg, permits.running));
                        }
                    }
                    Some(Fetched::GiveBack(waiting)) => {
                        ctx.give_back_waiting(waiting);
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
        // brought in is given back (refunded: no handler started), and so
        // are the prefetched messages still waiting.
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
                    Some(Fetched::GiveBack(waiting)) => given_back += ctx.give_back_waiting(waiting),
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
            match fetched {
                Fetched::Messages(items) => given_back += ctx.give_back(items),
                Fetched::GiveBack(waiting) => given_back += ctx.give_back_waiting(waiting),
                Fetched::Fatal(_) => {}
            }
        }
        for q in &states {
            let waiting = q.ahead.ready.lock().unwrap().drain(..).collect();
            given_back += ctx.give_back_waiting(waiting);
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
        // No handler runs now: no lease needs keeping (an extension still in
        // flight cannot touch a released message: it is fenced by the lease).
        keeper_task.abort();
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
