//! Writing job outcomes: batched, fenced by lease, retried until written.
//!
//! Every finished job becomes one [`Settlement`]: archive (completed),
//! release (back to the queue after a delay: given back, or cut off by the
//! stop) or fail (a handler's failure, for `message_fail`, which decides in
//! SQL between a retry after the backoff and dead). Settlements arriving
//! within the flush interval share one `message_archive`, one
//! `message_release` and one `message_fail` statement (one per distinct
//! backoff); a full batch (flush size), or any batch while no handler
//! runs, is written at once. A write that fails on the connection is
//! retried with backoff, never dropped; each row stays fenced by its lease, so
//! a retry cannot touch a message another consumer has taken since. A batch
//! the database refuses is retried one settlement at a time, so that one bad
//! row cannot hold up the others. Only a stopping worker, past its write
//! deadline, gives up on a write: it says so in an error log naming the ids,
//! counts it in [`WorkerStats::unwritten`](super::WorkerStats), and the
//! messages come back when their leases expire.
//!
//! A settlement carries its message's job, Settling ([`super::jobs`]), which
//! holds the message's place under the worker's held bound (`concurrency +
//! completion_backlog`): the job is dropped, and the place freed, once the
//! outcome is known (written, refused by the fence, or given up on), which is
//! what lets the worker fetch again when the writes have lagged that far behind.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

use super::events::WorkerStats;
use super::jobs::Job;
use super::options::Backoff;
use super::outcome::Action;
use super::reconnect::Reconnect;
use crate::calls::{FailKind, Failure, Fence};
use crate::db::Db;
use crate::error::{ErrorKind, Result};

/// Times the database may refuse (not: fail to receive) one settlement's
/// statement before the worker gives up on writing it; the message then comes
/// back when its lease expires.
pub(crate) const MAX_REFUSALS: u32 = 5;

/// The outcome of one settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Written (an archive or a release).
    Ok,
    /// A failure released for another attempt after `delay` (None: written
    /// by an earlier try whose reply was lost, the delay unknown).
    Retried { delay: Option<Duration> },
    /// A failure archived as dead.
    Dead,
    /// Refused by the fence: another consumer holds the message now.
    LeaseLost,
    /// The message is gone (archived or deleted by someone else).
    NotFound,
    /// Given up on (stopping with the database unreachable, or refused
    /// [`MAX_REFUSALS`] times): the message comes back when its lease expires.
    Unwritten,
    /// Written as status cancelled (a cancel was requested while held).
    Cancelled,
}

/// One message's outcome on its way to the database.
pub(crate) struct Settlement {
    pub(crate) id: i64,
    pub(crate) lease: Uuid,
    pub(crate) action: Action,
    /// Statements including this settlement that failed so far.
    failures: u32,
    outcome: Option<Outcome>,
    done: Option<oneshot::Sender<Outcome>>,
    /// The message's job (Settling), dropped with the outcome: its place is free then.
    job: Option<Job>,
}

impl Settlement {
    pub(crate) fn new(id: i64, lease: Uuid, action: Action) -> Settlement {
        Settlement { id, lease, action, failures: 0, outcome: None, done: None, job: None }
    }

    /// The settlement holds the message's job (and so its place under the
    /// held bound) until its outcome is known.
    pub(super) fn holding(mut self, job: Option<Job>) -> Settlement {
        self.job = job;
        self
    }

    fn is_archive(&self) -> bool {
        matches!(self.action, Action::Archive { .. })
    }

    fn is_release(&self) -> bool {
        matches!(self.action, Action::Release { .. })
    }

    /// The backoff of a failure.
    fn backoff(&self) -> Option<Backoff> {
        match self.action {
            Action::Fail { backoff, .. } => Some(backoff),
            _ => None,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
        // No longer held: the worker may fetch in its place.
        self.job.take();
        if let Some(done) = self.done.take() {
            let _ = done.send(outcome);
        }
    }
}

/// Submits settlements to the running [`Completer`]; cheap to share.
pub(crate) struct CompleterHandle {
    tx: Mutex<Option<mpsc::UnboundedSender<Settlement>>>,
    deadline: watch::Sender<Option<Instant>>,
}

impl CompleterHandle {
    /// Queue `s` for writing; the receiver gets its outcome once written.
    pub(crate) fn submit(&self, mut s: Settlement) -> oneshot::Receiver<Outcome> {
        let (done, rx) = oneshot::channel();
        s.done = Some(done);
        self.submit_detached(s);
        rx
    }

    /// Queue `s` for writing, with nobody waiting for its outcome.
    pub(crate) fn submit_detached(&self, s: Settlement) {
        let tx = self.tx.lock().unwrap();
        let unsent = match tx.as_ref() {
            Some(tx) => tx.send(s).err().map(|e| e.0),
            None => Some(s),
        };
        if let Some(mut s) = unsent {
            log::error!(
                "pgqrs worker: the outcome of message {} came after the completer stopped; it is \
                 delivered again when its lease expires",
                s.id
            );
            s.finish(Outcome::Unwritten);
        }
    }

    /// Stopping: write without waiting for the flush interval, and give up
    /// retrying failed writes at `deadline` (an earlier deadline wins).
    pub(crate) fn hurry(&self, deadline: Instant) {
        self.deadline.send_modify(|d| *d = Some(d.map_or(deadline, |old| old.min(deadline))));
    }

    /// Nothing more will be submitted: the completer ends once all is written.
    pub(crate) fn finish(&self) {
        self.tx.lock().unwrap().take();
    }
}

/// Writes settlements in batches; see the module docs.
pub(crate) struct Completer {
    db: Db,
    flush_interval: Duration,
    flush_size: usize,
    /// The counters; at zero handlers running (`stats.running`), nothing
    /// else can join a batch soon.
    stats: Arc<WorkerStats>,
    deadline: watch::Receiver<Option<Instant>>,
    reconnect: Reconnect,
}

impl Completer {
    pub(crate) fn new(
        db: Db,
        flush_interval: Duration,
        flush_size: usize,
        stats: Arc<WorkerStats>,
    ) -> (Completer, CompleterHandle, mpsc::UnboundedReceiver<Settlement>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (deadline_tx, deadline) = watch::channel(None);
        let completer =
            Completer { db, flush_interval, flush_size, stats, deadline, reconnect: Reconnect::default() };
        (completer, CompleterHandle { tx: Mutex::new(Some(tx)), deadline: deadline_tx }, rx)
    }

    fn hurrying(&self) -> bool {
        self.deadline.borrow().is_some()
    }

    /// Write everything submitted until the handle's `finish()`.
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Settlement>) {
        let mut pending: Vec<Settlement> = Vec::new();
        let mut open = true;
        loop {
            if pending.is_empty() {
                if !open {
                    return;
                }
                match rx.recv().await {
                    Some(s) => pending.push(s),
                    None => return,
                }
            }
            // Gather until the batch is full, the flush interval has passed,
            // no handler runs (none will join soon), or the worker is stopping.
            let flush_at = Instant::now() + self.flush_interval;
            loop {
                while let Ok(s) = rx.try_recv() {
                    pending.push(s);
                }
                if !open
                    || pending.len() >= self.flush_size
                    || self.hurrying()
                    || self.stats.running.load(Ordering::SeqCst) == 0
                {
                    break;
                }
                tokio::select! {
                    s = rx.recv() => match s {
                        Some(s) => pending.push(s),
                        None => open = false,
                    },
                    _ = tokio::time::sleep_until(flush_at) => break,
                    Ok(()) = self.deadline.changed() => {}
                }
            }
            let batch = take_batch(&mut pending, self.flush_size);
            self.write(batch).await;
        }
    }

    /// Write `batch`, retrying connection failures until written (or the
    /// stopping deadline); a refused statement is retried row by row.
    async fn write(&mut self, batch: Vec<Settlement>) {
        let mut groups: VecDeque<Vec<Settlement>> = VecDeque::from([batch]);
        while let Some(mut todo) = groups.pop_front() {
            todo.retain(|s| s.outcome.is_none());
            if todo.is_empty() {
                continue;
            }
            let Err(e) = self.write_once(&mut todo).await else {
                if self.reconnect.succeeded() {
                    log::info!("pgqrs worker: job outcomes written again after a database error");
                }
                continue;
            };
            todo.retain(|s| s.outcome.is_none());
            if todo.is_empty() {
                continue;
            }
            for s in todo.iter_mut() {
                s.failures += 1;
            }
            let refused = e.kind() != ErrorKind::Connection;
            if refused && todo.len() > 1 {
                log::warn!(
                    "pgqrs worker: writing {} job outcomes failed ({e}); retrying them one by one",
                    todo.len()
                );
                for s in todo.into_iter().rev() {
                    groups.push_front(vec![s]);
                }
                continue;
            }
            if refused && todo[0].failures >= MAX_REFUSALS {
                self.give_up(todo, &format!("refused {MAX_REFUSALS} times: {e}"));
                continue;
            }
            let wait = self.reconnect.failed();
            let deadline = *self.deadline.borrow();
            if deadline.is_some_and(|d| Instant::now() + wait > d) {
                todo.extend(groups.drain(..).flatten());
                self.give_up(todo, &format!("stopping: {e}"));
                return;
            }
            if self.reconnect.failures() == 1 {
                log::warn!(
                    "pgqrs worker: writing {} job outcome(s) failed, retrying in {wait:?}: {e}",
                    todo.len()
                );
            } else {
                log::debug!(
                    "pgqrs worker: writing {} job outcome(s) failed, retrying in {wait:?}: {e}",
                    todo.len()
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Ok(()) = self.deadline.changed() => {}
            }
            groups.push_front(todo);
        }
    }

    fn give_up(&self, mut settlements: Vec<Settlement>, why: &str) {
        let ids: Vec<i64> = settlements.iter().filter(|s| s.outcome.is_none()).map(|s| s.id).collect();
        if ids.is_empty() {
            return;
        }
        log::error!(
            "pgqrs worker: could not write the outcome of message(s) {ids:?} ({why}); they will be \
             delivered again when their leases expire"
        );
        self.stats.unwritten.fetch_add(ids.len() as u64, Ordering::Relaxed);
        for s in settlements.iter_mut().filter(|s| s.outcome.is_none()) {
            s.finish(Outcome::Unwritten);
        }
    }

    /// One message_archive, one message_release and one message_fail
    /// statement per distinct backoff for `todo`.
    async fn write_once(&self, todo: &mut [Settlement]) -> Result<()> {
        let archives: Vec<usize> = (0..todo.len()).filter(|&i| todo[i].is_archive()).collect();
        if !archives.is_empty() {
            let ids: Vec<i64> = archives.iter().map(|&i| todo[i].id).collect();
            let leases: Vec<Uuid> = archives.iter().map(|&i| todo[i].lease).collect();
            let mut statuses = Vec::with_capacity(archives.len());
            let mut results = Vec::with_capacity(archives.len());
            let mut errors = Vec::with_capacity(archives.len());
            for &i in &archives {
                if let Action::Archive { status, result, error } = &todo[i].action {
                    statuses.push(status.to_string());
                    results.push(result.clone());
                    errors.push(error.clone());
                }
            }
            let rows = self.db.message_archive(&ids, &leases, &statuses, &results, &errors, None).await?;
            // After a failed attempt whose commit may have gone through,
            // 'not_found' means our own earlier write landed.
            resolve(todo, &archives, rows.iter().map(|r| (r.id, fence(r.outcome))), |o| {
                (o == Outcome::NotFound).then_some(Outcome::Ok)
            });
        }
        let releases: Vec<usize> = (0..todo.len()).filter(|&i| todo[i].is_release()).collect();
        if !releases.is_empty() {
            let ids: Vec<i64> = releases.iter().map(|&i| todo[i].id).collect();
            let leases: Vec<Uuid> = releases.iter().map(|&i| todo[i].lease).collect();
            let mut delays = Vec::with_capacity(releases.len());
            let mut errors = Vec::with_capacity(releases.len());
            let mut refunds = Vec::with_capacity(releases.len());
            for &i in &releases {
                if let Action::Release { delay, error, refund } = &todo[i].action {
                    delays.push(*delay);
                    errors.push(error.clone());
                    refunds.push(*refund);
                }
            }
            let rows = self
                .db
                .message_release(&ids, &leases, &delays, &errors, Some(refunds.as_slice()), None)
                .await?;
            // A release that landed before a lost reply reads as 'lease_lost' on retry.
            resolve(todo, &releases, rows.iter().map(|r| (r.id, fence(r.outcome))), |o| {
                (o == Outcome::LeaseLost).then_some(Outcome::Ok)
            });
        }
        let mut backoffs: Vec<Backoff> = Vec::new();
        for b in todo.iter().filter_map(Settlement::backoff) {
            if !backoffs.contains(&b) {
                backoffs.push(b);
            }
        }
        for backoff in backoffs {
            let fails: Vec<usize> = (0..todo.len()).filter(|&i| todo[i].backoff() == Some(backoff)).collect();
            let failures: Vec<Failure> = fails
                .iter()
                .filter_map(|&i| match &todo[i].action {
                    Action::Fail { error, delay, dead, .. } => Some(Failure {
                        id: todo[i].id,
                        lease: todo[i].lease,
                        error: error.clone(),
                        delay: *delay,
                        dead: *dead,
                    }),
                    _ => None,
                })
                .collect();
            let rows = self.db.message_fail(&failures, backoff, None).await?;
            let outcomes = rows.iter().map(|r| {
                let outcome = match r.outcome {
                    FailKind::Retried => Outcome::Retried { delay: r.delay },
                    FailKind::Dead => Outcome::Dead,
                    FailKind::LeaseLost => Outcome::LeaseLost,
                    FailKind::NotFound => Outcome::NotFound,
                    FailKind::Cancelled => Outcome::Cancelled,
                };
                (r.id, outcome)
            });
            resolve(todo, &fails, outcomes, failed_earlier);
        }
        Ok(())
    }
}

/// Up to `size` pending settlements, at most one per message: one statement
/// must not name a message twice (a repeat, after a redelivery to this same
/// worker, waits for the next batch).
fn take_batch(pending: &mut Vec<Settlement>, size: usize) -> Vec<Settlement> {
    let mut batch = Vec::new();
    let mut rest = Vec::new();
    let mut seen = HashSet::new();
    for s in pending.drain(..) {
        if batch.len() < size && seen.insert(s.id) {
            batch.push(s);
        } else {
            rest.push(s);
        }
    }
    *pending = rest;
    batch
}

/// What a failure written by an earlier try, whose reply was lost, reads as
/// now: 'lease_lost' (released: no lease, or taken since) or 'not_found'
/// (archived as dead).
fn failed_earlier(now: Outcome) -> Option<Outcome> {
    match now {
        Outcome::LeaseLost => Some(Outcome::Retried { delay: None }),
        Outcome::NotFound => Some(Outcome::Dead),
        _ => None,
    }
}

fn fence(f: Fence) -> Outcome {
    match f {
        Fence::Ok => Outcome::Ok,
        Fence::LeaseLost => Outcome::LeaseLost,
        Fence::NotFound => Outcome::NotFound,
        Fence::Cancelled => Outcome::Cancelled,
    }
}

/// Set the outcome of each settlement at `indexes` from the statement's
/// per-id `outcomes` (an id missing: not found). A settlement whose earlier
/// statement failed may have been written by it: `on_retry` maps what such a
/// write reads as now to what it was.
fn resolve(
    todo: &mut [Settlement],
    indexes: &[usize],
    outcomes: impl Iterator<Item = (i64, Outcome)>,
    on_retry: impl Fn(Outcome) -> Option<Outcome>,
) {
    let by_id: HashMap<i64, Outcome> = outcomes.collect();
    for &i in indexes {
        let s = &mut todo[i];
        let mut outcome = by_id.get(&s.id).copied().unwrap_or(Outcome::NotFound);
        if s.failures > 0 {
            if let Some(earlier) = on_retry(outcome) {
                log::debug!(
                    "pgqrs worker: message {}: {outcome:?} on retry, taken as {earlier:?} by the earlier attempt",
                    s.id
                );
                outcome = earlier;
            }
        }
        s.finish(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(id: i64) -> Settlement {
        Settlement::new(
            id,
            Uuid::nil(),
            Action::Release { delay: Duration::ZERO, error: None, refund: false },
        )
    }

    fn failure(id: i64, failures: u32) -> (Settlement, oneshot::Receiver<Outcome>) {
        let backoff = Backoff::default();
        let mut s =
            Settlement::new(id, Uuid::nil(), Action::Fail { error: None, delay: None, dead: false, backoff });
        s.failures = failures;
        let (done, rx) = oneshot::channel();
        s.done = Some(done);
        (s, rx)
    }

    #[test]
    fn a_failure_found_done_on_a_retried_write_counts_as_written() {
        let (mut todo, mut rx): (Vec<_>, Vec<_>) =
            [failure(1, 1), failure(2, 1), failure(3, 0), failure(4, 0), failure(5, 0)].into_iter().unzip();
        let delay = Some(Duration::from_secs(2));
        let now = [
            (1, Outcome::LeaseLost),
            (2, Outcome::NotFound),
            (3, Outcome::LeaseLost),
            (4, Outcome::Retried { delay }),
            (5, Outcome::Dead),
        ];
        resolve(&mut todo, &[0, 1, 2, 3, 4], now.into_iter(), failed_earlier);
        let got: Vec<Outcome> = rx.iter_mut().map(|r| r.try_recv().unwrap()).collect();
        assert_eq!(
            got,
            [
                Outcome::Retried { delay: None },
                Outcome::Dead,
                Outcome::LeaseLost,
                Outcome::Retried { delay },
                Outcome::Dead
            ]
        );
    }

    #[test]
    fn a_batch_names_each_message_once_and_keeps_the_rest() {
        let mut pending = vec![release(1), release(2), release(1), release(3)];
        let batch = take_batch(&mut pending, 10);
        assert_eq!(batch.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(pending.iter().map(|s| s.id).collect::<Vec<_>>(), [1]);
        let mut pending = vec![release(1), release(2), release(3)];
        assert_eq!(take_batch(&mut pending, 2).len(), 2);
        assert_eq!(pending.len(), 1);
    }
}
