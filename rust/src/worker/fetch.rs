//! Fetching: one loop per queue, one dequeue statement per round for the
//! free slots, in useful batches.
//!
//! A message needs two permits to be fetched. A *running* permit is a unit of
//! the worker's `concurrency` (and of its queue's own limit, if it has one):
//! it is dropped as soon as the message's handler returns. A *held* permit is
//! one place under `concurrency + completion_backlog` messages held (running,
//! or waiting for their outcome to be written): it travels with the outcome
//! to the completer and is dropped once the outcome is written (or given up
//! on). So handlers running never exceed `concurrency`, the worker never
//! holds more than `concurrency + completion_backlog` messages, and fetching
//! waits while the writes lag that far behind (backpressure).
//!
//! A dequeue may also take messages beyond the free slots (prefetch, see
//! [`super::prefetch`]): each holds a held permit but no running permit, and
//! waits in its queue's ready queue; the queue's fetch loop starts them as
//! running permits free up, before its next dequeue.
//!
//! A queue with nothing running fetches as soon as a slot is free. A queue
//! with handlers still running waits until [`DEFAULT_FETCH_BATCH_FRACTION`]
//! of its slots are free (or a free slot has waited [`DEFAULT_FETCH_DELAY`]),
//! so that one round trip brings several messages rather than one per
//! finished handler. A queue is polled again at once after a full batch,
//! else after a NOTIFY or the poll interval.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_postgres::types::Type;

use super::backoff::Reconnect;
use super::leases::LeaseKeeper;
use super::options::{Prefetch, DEFAULT_FETCH_BATCH_FRACTION, DEFAULT_FETCH_DELAY, DEFAULT_PREFETCH_MAX_WAIT};
use super::prefetch::{Ahead, Prefetcher, Waiting};
use super::{wait_level, WorkerStats};
use crate::consumer::{dequeue_result, DEQUEUE_DEAD_RETRIES};
use crate::db::Db;
use crate::error::{Error, ErrorKind, Result};
use crate::message::Message;
use crate::queries::Query;

/// One served queue.
pub(super) struct QueueState {
    pub(super) name: String,
    /// Lease length asked for at dequeue.
    pub(super) vt: Duration,
    /// Attempts after which a failure is final.
    pub(super) max_attempts: i32,
    /// Woken by NOTIFY (and after every LISTEN reconnect).
    pub(super) wake: Arc<Notify>,
    /// This queue's own limit of handlers running, when it has one below the worker's.
    pub(super) slots: Option<Arc<Semaphore>>,
    /// Free slots worth a dequeue while some of this queue's handlers still
    /// run (see the module docs).
    pub(super) min_batch: usize,
    /// This queue's messages holding a running permit: handlers running, or
    /// about to start.
    pub(super) active: Arc<AtomicUsize>,
    /// Its prefetched messages and handler durations.
    pub(super) ahead: Ahead,
}

impl QueueState {
    /// Free slots worth a dequeue while some of a queue's handlers still run:
    /// [`DEFAULT_FETCH_BATCH_FRACTION`] of the most that can run at once
    /// (`limit`, the queue's own, at most the worker's `concurrency`), at least one.
    pub(super) fn min_batch(limit: usize, concurrency: usize) -> usize {
        ((limit.min(concurrency) as f64 * DEFAULT_FETCH_BATCH_FRACTION).ceil() as usize).max(1)
    }
}

/// A handler slot: one of the worker's `concurrency` (and of its queue's
/// limit, if it has one). Dropped as soon as the handler returns.
pub(super) struct Running {
    _worker: OwnedSemaphorePermit,
    _own: Option<OwnedSemaphorePermit>,
    /// The queue's count of active messages, once the slot holds one.
    active: Option<Arc<AtomicUsize>>,
}

impl Running {
    /// The slot now holds a message of `q`: counted as active.
    fn assign(mut self, q: &QueueState) -> Running {
        q.active.fetch_add(1, Ordering::SeqCst);
        self.active = Some(q.active.clone());
        self
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(active) = &self.active {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One message's place under the held bound (`concurrency +
/// completion_backlog`). It travels with the message's outcome to the
/// completer and is dropped once the outcome is written (or given up on);
/// while it holds a message, the message counts in
/// [`WorkerStats::in_flight`].
pub(crate) struct Held {
    _permit: OwnedSemaphorePermit,
    /// The counters, once the place holds a message.
    stats: Option<Arc<WorkerStats>>,
}

impl Held {
    /// The place now holds a message: counted in flight.
    fn assign(mut self, stats: &Arc<WorkerStats>) -> Held {
        stats.in_flight.fetch_add(1, Ordering::SeqCst);
        self.stats = Some(stats.clone());
        self
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(stats) = &self.stats {
            stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The permits one message needs: a handler slot and a place under the held bound.
pub(super) struct Permits {
    pub(super) running: Running,
    pub(super) held: Held,
}

impl Permits {
    /// The permits now hold a message of `q`: counted as active and in flight.
    fn assign(self, q: &QueueState, stats: &Arc<WorkerStats>) -> Permits {
        Permits { running: self.running.assign(q), held: self.held.assign(stats) }
    }
}

/// What a fetch loop hands to the worker.
pub(super) enum Fetched {
    /// Leased messages to start, each with its permits (their leases are
    /// already with the lease keeper).
    Messages(Vec<(Message, Permits)>),
    /// Prefetched messages to give back: none started within
    /// [`DEFAULT_PREFETCH_MAX_WAIT`] of their dequeue.
    GiveBack(Vec<Waiting>),
    Fatal(Error),
}

/// What every fetch loop of a worker shares.
pub(super) struct Fetcher {
    pub(super) db: Db,
    /// Handlers running at once: `concurrency` permits.
    pub(super) running: Arc<Semaphore>,
    /// Messages held at once: `concurrency + completion_backlog` permits.
    pub(super) held: Arc<Semaphore>,
    pub(super) worker_id: Arc<AtomicI64>,
    pub(super) batch_cap: usize,
    pub(super) poll_interval: Duration,
    pub(super) stats: Arc<WorkerStats>,
    /// Keeps the leases of fetched messages, from their dequeue on.
    pub(super) keeper: Arc<LeaseKeeper>,
    pub(super) prefetcher: Prefetcher,
    pub(super) out: mpsc::UnboundedSender<Fetched>,
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

const OPEN: &str = "the semaphore is never closed";

impl Fetcher {
    /// A handler slot for one message of `q`, waiting for each permit: the
    /// queue's own first (if limited), then one of the worker's. Cancel-safe:
    /// a permit already taken is given back.
    async fn acquire_running(&self, q: &QueueState) -> Running {
        let own = match &q.slots {
            None => None,
            Some(own) => Some(own.clone().acquire_owned().await.expect(OPEN)),
        };
        let worker = self.running.clone().acquire_owned().await.expect(OPEN);
        Running { _worker: worker, _own: own, active: None }
    }

    /// The permits for one message of `q`, waiting for each: a handler slot,
    /// then a place under the held bound. Cancel-safe.
    async fn acquire(&self, q: &QueueState) -> Permits {
        let running = self.acquire_running(q).await;
        let held = self.held.clone().acquire_owned().await.expect(OPEN);
        Permits { running, held: Held { _permit: held, stats: None } }
    }

    /// Places under the held bound for up to `n` prefetched messages, those free now.
    fn try_acquire_held(&self, n: usize) -> Vec<Held> {
        (0..n)
            .map_while(|_| self.held.clone().try_acquire_owned().ok())
            .map(|p| Held { _permit: p, stats: None })
            .collect()
    }

    /// The permits for one message of `q` if all are free now.
    fn try_acquire(&self, q: &QueueState) -> Option<Permits> {
        let own = match &q.slots {
            None => None,
            Some(own) => Some(own.clone().try_acquire_owned().ok()?),
        };
        let worker = self.running.clone().try_acquire_owned().ok()?;
        let held = self.held.clone().try_acquire_owned().ok()?;
        Some(Permits {
            running: Running { _worker: worker, _own: own, active: None },
            held: Held { _permit: held, stats: None },
        })
    }

    /// Places under the held bound for the messages a dequeue of `q` with
    /// `free` slots may take ahead (see [`Prefetcher::reserve`]), reserved
    /// until the dequeue has returned.
    fn places(&self, q: &QueueState, free: usize) -> Vec<Held> {
        let extra = self.prefetcher.reserve(&q.ahead, self.batch_cap - free);
        let places = self.try_acquire_held(extra);
        self.prefetcher.unreserve(extra - places.len());
        places
    }

    /// The permits for the next dequeue of `q`, and places for the messages
    /// it may take ahead: wait for one set of permits, take every other free
    /// one (up to `batch_cap`); while some of the queue's handlers still run,
    /// wait for `min_batch` sets, at most [`DEFAULT_FETCH_DELAY`] after the
    /// first. With no slot free, a dequeue of messages ahead only goes at
    /// once if it takes that many (or the queue has nothing running), as in
    /// the Python worker: they start as slots free up, without a round trip.
    /// None: stopping.
    async fn permits(
        &self,
        q: &QueueState,
        stop: &mut watch::Receiver<u8>,
    ) -> Option<(Vec<Permits>, Vec<Held>)> {
        let enough = q.min_batch.min(self.batch_cap);
        let first = match self.try_acquire(q) {
            Some(p) => p,
            None => {
                let places = self.places(q, 0);
                if !places.is_empty() && (places.len() >= enough || q.active.load(Ordering::SeqCst) == 0) {
                    return Some((Vec::new(), places));
                }
                self.prefetcher.unreserve(places.len());
                drop(places);
                tokio::select! {
                    p = self.acquire(q) => p,
                    _ = wait_level(stop, 1) => return None,
                }
            }
        };
        let mut permits = vec![first];
        let deadline = Instant::now() + DEFAULT_FETCH_DELAY;
        loop {
            while permits.len() < self.batch_cap {
                match self.try_acquire(q) {
                    Some(p) => permits.push(p),
                    None => break,
                }
            }
            if permits.len() >= enough || q.active.load(Ordering::SeqCst) == 0 {
                let places = self.places(q, permits.len());
                return Some((permits, places));
            }
            // Handlers still running: let a few more slots free up first.
            tokio::select! {
                p = self.acquire(q) => permits.push(p),
                _ = tokio::time::sleep_until(deadline) => {
                    let places = self.places(q, permits.len());
                    return Some((permits, places));
                }
                _ = wait_level(stop, 1) => return None,
            }
        }
    }

    /// Start the prefetched messages of `q`, each as a handler slot frees
    /// up, until none waits. `give_back_at` (auto prefetch): then those still
    /// waiting are given back, and the queue's handlers are taken to be slow.
    /// False: stopping (the worker gives back those left).
    async fn start_waiting(
        &self,
        q: &QueueState,
        stop: &mut watch::Receiver<u8>,
        give_back_at: Option<Instant>,
    ) -> bool {
        while q.ahead.has_waiting() {
            let running = tokio::select! {
                r = self.acquire_running(q) => r,
                _ = tokio::time::sleep_until(give_back_at.unwrap_or_else(Instant::now)), if give_back_at.is_some() => {
                    let stale: Vec<Waiting> = q.ahead.ready.lock().unwrap().drain(..).collect();
                    q.ahead.slowed(DEFAULT_PREFETCH_MAX_WAIT);
                    self.prefetcher.unreserve(stale.len());
                    log::info!(
                        "pgqrs worker: giving back {} prefetched message(s) of {:?}: none started within {:?}",
                        stale.len(),
                        q.name,
                        DEFAULT_PREFETCH_MAX_WAIT
                    );
                    return self.out.send(Fetched::GiveBack(stale)).is_ok();
                }
                _ = wait_level(stop, 1) => return false,
            };
            // No await from here to the send: a message is in the ready
            // queue (given back by the worker if it stops) or with the worker.
            let Some(w) = q.ahead.ready.lock().unwrap().pop_front() else { break };
            self.prefetcher.unreserve(1);
            let permits = Permits { running: running.assign(q), held: w.held };
            if self.out.send(Fetched::Messages(vec![(w.msg, permits)])).is_err() {
                return false;
            }
        }
        true
    }

    /// One queue's fetch loop: start its prefetched messages (see
    /// [`Fetcher::start_waiting`]), take the permits for a dequeue (see
    /// [`Fetcher::permits`]) and places for the messages it may take ahead,
    /// dequeue that many; poll again at once after a full batch, else after a
    /// NOTIFY or the poll interval (the messages taken ahead started first).
    /// Ends at the first stop request (after its current dequeue, whose
    /// messages the worker gives back, with those still waiting).
    pub(super) async fn fetch_loop(self: Arc<Self>, q: Arc<QueueState>, mut stop: watch::Receiver<u8>) {
        let mut reconnect = Reconnect::default();
        let mut give_back_at = None;
        loop {
            if !self.start_waiting(&q, &mut stop, give_back_at.take()).await {
                return;
            }
            let Some((mut permits, mut places)) = self.permits(&q, &mut stop).await else { return };
            let free = permits.len();
            let asked = free + places.len();
            let sent = Instant::now();
            let messages = match dequeue(&self.db, &q, asked, self.worker_id.load(Ordering::Relaxed)).await {
                Ok(m) => m,
                Err(e) => {
                    self.prefetcher.unreserve(places.len());
                    drop((permits, places));
                    if matches!(e.kind(), ErrorKind::QueueNotFound | ErrorKind::SchemaNotInstalled) {
                        let _ = self.out.send(Fetched::Fatal(e));
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
            for m in &messages {
                self.keeper.hold(m.id, m.lease.unwrap_or_default(), q.vt, sent);
            }
            // The first messages have slots; the rest (if any) wait for one.
            let mut messages = messages.into_iter();
            let items: Vec<_> = permits
                .drain(..)
                .zip(messages.by_ref())
                .map(|(p, m)| (m, p.assign(&q, &self.stats)))
                .collect();
            let waiting: Vec<Waiting> = messages
                .zip(places.drain(..))
                .map(|(msg, held)| Waiting { msg, held: held.assign(&self.stats) })
                .collect();
            self.prefetcher.unreserve(asked - free - waiting.len());
            if !waiting.is_empty() {
                self.stats.prefetched.fetch_add(waiting.len() as u64, Ordering::SeqCst);
                if self.prefetcher.mode == Prefetch::Auto {
                    give_back_at = Some(Instant::now() + DEFAULT_PREFETCH_MAX_WAIT);
                }
                q.ahead.ready.lock().unwrap().extend(waiting);
            }
            if !items.is_empty() && self.out.send(Fetched::Messages(items)).is_err() {
                return;
            }
            drop((permits, places));
            if got == asked {
                continue; // a full batch: more may be waiting
            }
            // Drained: poll again after a NOTIFY (kept by `wake` meanwhile)
            // or the poll interval, the prefetched messages started first.
            let next_poll = Instant::now() + self.poll_interval;
            if !self.start_waiting(&q, &mut stop, give_back_at.take()).await {
                return;
            }
            tokio::select! {
                _ = q.wake.notified() => {}
                _ = tokio::time::sleep_until(next_poll) => {}
                _ = wait_level(&mut stop, 1) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::QueueState;

    #[test]
    fn a_dequeue_waits_for_a_quarter_of_the_slots_at_least_one() {
        assert_eq!(QueueState::min_batch(8, 8), 2);
        assert_eq!(QueueState::min_batch(100, 8), 2, "a queue's limit counts up to the worker's");
        assert_eq!(QueueState::min_batch(16, 16), 4);
        assert_eq!(QueueState::min_batch(10, 16), 3, "rounded up");
        assert_eq!(QueueState::min_batch(3, 8), 1);
        assert_eq!(QueueState::min_batch(1, 1), 1);
    }
}
