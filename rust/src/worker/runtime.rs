//! Wiring only (as Python's `runtime.py`): [`start`] the parts, [`serve`]
//! until a stop request, then [`shutdown()`] through the phases of
//! [`super::shutdown`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::completer::Completer;
use super::fetcher::{Fetched, Fetcher, QueueState};
use super::handlers::JobContext;
use super::heartbeat::{heartbeat, register, Registration};
use super::jobs::JobTable;
use super::leases::LeaseKeeper;
use super::listener::listen;
use super::outcome::JobError;
use super::prefetch::{Ahead, AutoPolicy, Prefetcher};
use super::shutdown;
use super::slots::{QueueSlots, Slots};
use super::{wait_level, Worker};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::message::Message;

/// A started worker: its parts and their tasks.
struct Runtime<F> {
    states: Vec<Arc<QueueState>>,
    /// The worker's row (its id stays: a pruned row is registered again under it).
    me: Registration,
    ctx: Arc<JobContext<F>>,
    stop_rx: watch::Receiver<u8>,
    /// Read by the heartbeat: the status it records.
    stopping: Arc<AtomicBool>,
    fetch_rx: mpsc::UnboundedReceiver<Fetched>,
    fetchers: JoinSet<()>,
    /// The running jobs.
    jobs: JoinSet<()>,
    completer_task: JoinHandle<()>,
    keeper_task: JoinHandle<()>,
    heartbeat_task: JoinHandle<()>,
    /// Ends the heartbeat between two statements (not aborted).
    quit: Arc<Notify>,
    /// The LISTEN connection, if any.
    background: JoinSet<()>,
}

/// Run `handler` on `worker` until a stop request, then stop.
pub(super) async fn run<F, Fut, R>(worker: &Worker, handler: F) -> Result<()>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    let mut rt = start(worker, handler).await?;
    let fatal = serve(&mut rt).await;
    shutdown(worker, rt, fatal).await
}

/// The queue's settings for this worker: the worker's options, those of
/// `queue_settings` first, within the queue's own limits.
async fn queue_state(worker: &Worker, name: &str) -> Result<QueueState> {
    let opts = &worker.options;
    let info = worker.db.queue_get(name).await?.ok_or_else(|| Error::queue_not_found(name))?;
    let own = opts.queue_settings.get(name).cloned().unwrap_or_default();
    let max_attempts = own.max_attempts.or(opts.max_attempts);
    let limit = own.concurrency.unwrap_or(opts.concurrency).min(opts.concurrency);
    Ok(QueueState {
        name: name.to_string(),
        vt: own
            .visibility_timeout
            .or(opts.visibility_timeout)
            .unwrap_or_else(|| Duration::from_secs_f64(info.visibility_timeout)),
        max_attempts: max_attempts.map_or(info.max_attempts, |m| m.min(info.max_attempts)),
        worker_max_attempts: max_attempts.filter(|m| *m < info.max_attempts),
        wake: Arc::new(Notify::new()),
        slots: QueueSlots::new(limit, opts.concurrency, opts.fetch_batch_fraction),
        ahead: Ahead::new(limit, AutoPolicy::of(opts)),
    })
}

/// Register the worker and start its parts: the completer, the lease
/// keeper, the LISTEN connection, the heartbeat and one fetch loop per queue.
async fn start<F, Fut, R>(worker: &Worker, handler: F) -> Result<Runtime<F>>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    let opts = &worker.options;
    let mut states = Vec::new();
    for name in &worker.queues {
        states.push(Arc::new(queue_state(worker, name).await?));
    }
    let listen_to = match (opts.poll_only, &opts.listen_dsn) {
        (true, _) => None,
        (false, Some(dsn)) => {
            let c = Config::from_dsn(dsn)?;
            Some((c.pg_config(), c.connector()?))
        }
        (false, None) => Some((worker.config.pg_config(), worker.config.connector()?)),
    };
    super::schedules::declare(&worker.db, &worker.schedules).await?;
    let me = register(&worker.db, &worker.queues, listen_to.is_some()).await?;
    log::info!(
        "pgqrs worker {} serving {} (concurrency {}, completion backlog {}, {})",
        me.id,
        worker.queues.join(", "),
        opts.concurrency,
        opts.completion_backlog,
        if listen_to.is_some() { "LISTEN + polling" } else { "polling only" }
    );
    let (completer, completer_handle, completer_rx) =
        Completer::new(worker.db.clone(), opts.flush_interval, opts.flush_size, worker.stats.clone());
    let completer_task = tokio::spawn(completer.run(completer_rx));
    worker.metrics.observe(&worker.stats, me.id);
    let keeper = Arc::new(LeaseKeeper::new(
        worker.db.clone(),
        opts.lease_extend_at,
        opts.lease_check_interval,
        worker.metrics.clone(),
    ));
    let k = keeper.clone();
    let keeper_task = tokio::spawn(async move { k.run().await });
    let ctx = Arc::new(JobContext {
        keeper: keeper.clone(),
        events: worker.events.clone(),
        handler,
        db: worker.db.clone(),
        worker_id: me.id,
        backoff: opts.backoff,
        stats: worker.stats.clone(),
        table: JobTable::default(),
        completer: completer_handle,
        metrics: worker.metrics.clone(),
    });
    let stop_rx = worker.stop.subscribe();
    let mut background = JoinSet::new();
    if let Some((pg, connector)) = listen_to {
        let wakes = states.iter().map(|q| (q.name.clone(), q.wake.clone())).collect();
        background.spawn(listen(pg, connector, worker.config.schema().to_string(), wakes, stop_rx.clone()));
    }
    if opts.run_schedules.unwrap_or(!worker.schedules.is_empty()) {
        background.spawn(super::schedules::run(worker.db.clone(), worker.stats.clone(), stop_rx.clone()));
    }
    let stopping = Arc::new(AtomicBool::new(false));
    let quit = Arc::new(Notify::new());
    let heartbeat_task = tokio::spawn(heartbeat(
        worker.db.clone(),
        me.clone(),
        opts.clone(),
        stopping.clone(),
        quit.clone(),
        keeper.cancels.clone(),
    ));
    let (fetch_tx, fetch_rx) = mpsc::unbounded_channel();
    let fetcher = Arc::new(Fetcher {
        db: worker.db.clone(),
        slots: Slots::new(opts.concurrency, opts.concurrency + opts.completion_backlog),
        worker_id: me.id,
        batch_size: opts.batch_size,
        poll_interval: opts.poll_interval,
        fetch_delay: opts.fetch_delay,
        prefetch_max_wait: opts.prefetch_max_wait,
        stats: worker.stats.clone(),
        keeper,
        prefetcher: Prefetcher::new(opts.prefetch),
        out: fetch_tx,
    });
    let mut fetchers = JoinSet::new();
    for q in &states {
        fetchers.spawn(fetcher.clone().fetch_loop(q.clone(), stop_rx.clone()));
    }
    // The loops hold the only senders: the channel closes when they end.
    drop(fetcher);
    Ok(Runtime {
        states,
        me,
        ctx,
        stop_rx,
        stopping,
        fetch_rx,
        fetchers,
        jobs: JoinSet::new(),
        completer_task,
        keeper_task,
        heartbeat_task,
        quit,
        background,
    })
}

/// Start a job for each message fetched, until a stop request (or a fatal
/// fetch error, returned).
async fn serve<F, Fut, R>(rt: &mut Runtime<F>) -> Option<Error>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    loop {
        tokio::select! {
            _ = wait_level(&mut rt.stop_rx, 1) => return None,
            fetched = rt.fetch_rx.recv() => match fetched {
                Some(Fetched::Messages(items)) => {
                    for (msg, job) in items {
                        let q = rt.states.iter().find(|q| q.name == msg.queue).expect("a served queue").clone();
                        // In the table before the task runs: one aborted
                        // before its first step is still released at shutdown.
                        rt.ctx.table.track(msg.lease.unwrap_or_default(), msg.id, job);
                        rt.jobs.spawn(rt.ctx.clone().process(q, msg));
                    }
                }
                Some(Fetched::GiveBack(waiting)) => {
                    shutdown::give_back_waiting(&rt.ctx, waiting);
                }
                Some(Fetched::Fatal(e)) => return Some(e),
                None => return None,
            },
            Some(_) = rt.jobs.join_next(), if !rt.jobs.is_empty() => {}
        }
    }
}

/// Stop: the phases of [`super::shutdown`], in order; then the fatal error, if any.
async fn shutdown<F>(worker: &Worker, mut rt: Runtime<F>, mut fatal: Option<Error>) -> Result<()> {
    rt.stopping.store(true, Ordering::SeqCst);
    let now = *rt.stop_rx.borrow() >= 2;
    let grace_end = Instant::now() + if now { Duration::ZERO } else { worker.options.grace_period };
    log::info!("pgqrs worker {} stopping: {} job(s) running", rt.me.id, rt.jobs.len());
    let stopping_status = shutdown::record_stopping(&worker.db, &rt.me);
    if !now {
        // The fetch loops stop too (a fatal error or a closed channel ended serving).
        worker.stop.send_modify(|level| *level = (*level).max(1));
    }
    let mut given_back = shutdown::drain_fetches(
        &rt.ctx,
        &mut rt.fetch_rx,
        &mut rt.jobs,
        &mut rt.stop_rx,
        grace_end,
        &mut fatal,
    )
    .await;
    given_back += shutdown::give_back_the_rest(&rt.ctx, &mut rt.fetchers, &mut rt.fetch_rx, &rt.states).await;
    if given_back > 0 {
        log::info!("pgqrs worker: gave back {given_back} message(s) fetched but not started");
    }
    shutdown::finish_running(&mut rt.jobs, &mut rt.stop_rx, grace_end).await;
    let write_timeout = shutdown::final_writes(
        &rt.ctx,
        &mut rt.jobs,
        rt.keeper_task,
        rt.completer_task,
        &mut rt.stop_rx,
        worker.options.shutdown_write_timeout,
    )
    .await;
    let tasks = [stopping_status, rt.heartbeat_task];
    shutdown::record_stop(&worker.db, rt.me.id, rt.background, &rt.quit, tasks, write_timeout).await;
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
