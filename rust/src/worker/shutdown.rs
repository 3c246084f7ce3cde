//! The shutdown phases, in the order the runtime calls them (as Python's
//! `shutdown.py`):
//!
//! 1. [`drain_fetches`]: the fetch loops end after their current dequeue;
//!    what it brought in is given back (refunded: no handler started), while
//!    running handlers go on within the grace period.
//! 2. [`give_back_the_rest`]: the fetch loops stopped; the messages still on
//!    their way and the prefetched ones still waiting are given back.
//! 3. [`finish_running`]: running handlers get the rest of the grace period.
//! 4. [`final_writes`]: the handlers still running are cut off and their
//!    messages released (the attempt counts), then every outcome held is
//!    written, within `shutdown_write_timeout`.
//! 5. [`record_stop`]: the heartbeat ends and the worker's row says stopped.
//!
//! A second stop request shortens every wait (see [`HARD_STOP_WRITE_TIMEOUT`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::completer::Settlement;
use super::fetcher::{Fetched, QueueState};
use super::handlers::JobContext;
use super::heartbeat::{heartbeat_once, Registration};
use super::jobs::Job;
use super::outcome::{stopped_error, Action};
use super::prefetch::Waiting;
use super::wait_level;
use crate::db::Db;
use crate::error::Error;
use crate::message::Message;

/// What is left of `shutdown_write_timeout` after a second stop request.
pub(super) const HARD_STOP_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Give back messages fetched but not started (their jobs Ready): released
/// at once, their attempt refunded. Returns how many.
pub(super) fn give_back<F>(ctx: &JobContext<F>, items: Vec<(Message, Job)>) -> usize {
    give_back_waiting(ctx, items.into_iter().map(|(msg, job)| Waiting { msg, job }).collect())
}

/// Give back prefetched messages that no handler started: released at once
/// (no longer kept by the lease keeper), their attempt refunded. Returns how many.
pub(super) fn give_back_waiting<F>(ctx: &JobContext<F>, waiting: Vec<Waiting>) -> usize {
    let n = waiting.len();
    for Waiting { msg, mut job } in waiting {
        job.settle();
        let lease = msg.lease.unwrap_or_default();
        ctx.keeper.drop_lease(msg.id, lease);
        ctx.completer.submit_detached(Settlement::new(msg.id, lease, Action::give_back()).holding(Some(job)));
    }
    n
}

/// Record the stopping state in the workers table, without waiting for it.
pub(super) fn record_stopping(db: &Db, me: &Registration) -> JoinHandle<()> {
    let (db, me) = (db.clone(), me.clone());
    tokio::spawn(async move {
        if let Err(e) = heartbeat_once(&db, &me, "stopping").await {
            log::warn!("pgqrs worker {}: could not record the stopping state: {e}", me.id);
        }
    })
}

/// Phase 1: give back what the fetch loops still bring, until they have all
/// ended, the grace period is over or a second stop request comes; running
/// handlers go on meanwhile. A fatal fetch error is kept (the first one).
pub(super) async fn drain_fetches<F>(
    ctx: &JobContext<F>,
    fetch_rx: &mut mpsc::UnboundedReceiver<Fetched>,
    jobs: &mut JoinSet<()>,
    stop: &mut watch::Receiver<u8>,
    grace_end: Instant,
    fatal: &mut Option<Error>,
) -> usize {
    let mut given_back = 0;
    loop {
        tokio::select! {
            fetched = fetch_rx.recv() => match fetched {
                Some(Fetched::Messages(items)) => given_back += give_back(ctx, items),
                Some(Fetched::GiveBack(waiting)) => given_back += give_back_waiting(ctx, waiting),
                Some(Fetched::Fatal(e)) => { fatal.get_or_insert(e); }
                None => break,
            },
            _ = tokio::time::sleep_until(grace_end) => break,
            _ = wait_level(stop, 2) => break,
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
        }
    }
    given_back
}

/// Phase 2: stop the fetch loops, give back what they sent and the
/// prefetched messages still waiting. Returns how many.
pub(super) async fn give_back_the_rest<F>(
    ctx: &JobContext<F>,
    fetchers: &mut JoinSet<()>,
    fetch_rx: &mut mpsc::UnboundedReceiver<Fetched>,
    states: &[Arc<QueueState>],
) -> usize {
    fetchers.abort_all();
    while fetchers.join_next().await.is_some() {}
    let mut given_back = 0;
    while let Ok(fetched) = fetch_rx.try_recv() {
        match fetched {
            Fetched::Messages(items) => given_back += give_back(ctx, items),
            Fetched::GiveBack(waiting) => given_back += give_back_waiting(ctx, waiting),
            Fetched::Fatal(_) => {}
        }
    }
    for q in states {
        let waiting = q.ahead.ready.lock().unwrap().drain(..).collect();
        given_back += give_back_waiting(ctx, waiting);
    }
    given_back
}

/// Phase 3: wait for the running handlers until the grace period ends (or a
/// second stop request).
pub(super) async fn finish_running(
    jobs: &mut JoinSet<()>,
    stop: &mut watch::Receiver<u8>,
    grace_end: Instant,
) {
    while !jobs.is_empty() {
        tokio::select! {
            _ = jobs.join_next() => {}
            _ = tokio::time::sleep_until(grace_end) => break,
            _ = wait_level(stop, 2) => break,
        }
    }
}

/// Release the messages of jobs cut off at the end of the grace period: a
/// handler that ran has its attempt counted, one that never started has it
/// refunded.
fn release_cut_off<F>(ctx: &JobContext<F>) {
    let cut = ctx.table.drain();
    if cut.is_empty() {
        return;
    }
    let ids: Vec<i64> = cut.iter().filter(|(_, _, ran, _)| *ran).map(|(_, id, _, _)| *id).collect();
    if !ids.is_empty() {
        log::warn!(
            "pgqrs worker: releasing {} job(s) still running at the end of the grace period: {ids:?}",
            ids.len()
        );
    }
    let error = stopped_error(ctx.worker_id, ctx.db.config.max_payload_bytes());
    for (lease, id, ran, job) in cut {
        let action = if ran {
            Action::Release { delay: Duration::ZERO, error: error.clone(), refund: false }
        } else {
            Action::give_back()
        };
        ctx.completer.submit_detached(Settlement::new(id, lease, action).holding(Some(job)));
    }
}

/// Phase 4: cut off the handlers still running (their messages released),
/// stop keeping leases, and write every outcome held: within
/// `write_timeout` (at most [`HARD_STOP_WRITE_TIMEOUT`] after a second stop
/// request, even one that comes now). Returns the time allowed for the
/// writes that follow.
pub(super) async fn final_writes<F>(
    ctx: &JobContext<F>,
    jobs: &mut JoinSet<()>,
    keeper_task: JoinHandle<()>,
    mut completer_task: JoinHandle<()>,
    stop: &mut watch::Receiver<u8>,
    write_timeout: Duration,
) -> Duration {
    let mut hard = *stop.borrow() >= 2;
    let write_timeout = if hard { write_timeout.min(HARD_STOP_WRITE_TIMEOUT) } else { write_timeout };
    ctx.completer.hurry(Instant::now() + write_timeout);
    jobs.abort_all();
    while jobs.join_next().await.is_some() {}
    // No handler runs now: no lease needs keeping (an extension still in
    // flight cannot touch a released message: it is fenced by the lease).
    keeper_task.abort();
    release_cut_off(ctx);
    ctx.completer.finish();
    loop {
        tokio::select! {
            _ = &mut completer_task => break,
            _ = wait_level(stop, 2), if !hard => {
                hard = true;
                ctx.completer.hurry(Instant::now() + HARD_STOP_WRITE_TIMEOUT);
            }
        }
    }
    write_timeout
}

/// Phase 5: end the LISTEN connection and the heartbeat (between two
/// statements: a heartbeat in flight must not land after `worker_stop` and
/// undo it), then mark the worker stopped, each within `write_timeout`.
pub(super) async fn record_stop(
    db: &Db,
    id: i64,
    mut background: JoinSet<()>,
    quit: &Notify,
    tasks: [JoinHandle<()>; 2],
    write_timeout: Duration,
) {
    background.abort_all();
    quit.notify_one();
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout(write_timeout, task).await.is_err() {
            abort.abort();
        }
    }
    match tokio::time::timeout(write_timeout, db.worker_stop(id)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => log::warn!("pgqrs worker {id}: could not record the stop: {e}"),
        Err(_) => log::warn!("pgqrs worker {id}: could not record the stop within {write_timeout:?}"),
    }
    log::info!("pgqrs worker {id} stopped");
}
