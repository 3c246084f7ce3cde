//! Fetching: one loop per queue, one dequeue statement per round for the
//! free slots, in useful batches.
//!
//! A message needs a slot and a place to be fetched ([`super::slots`]); a
//! dequeue may also take messages beyond the free slots (prefetch, sized by
//! [`super::prefetch`]): each holds a place but no slot, and waits in its
//! queue's ready queue; the queue's fetch loop starts them as slots free up,
//! before its next dequeue. Each message fetched becomes a [`Job`] of the
//! job table ([`super::jobs`]), Ready or Prefetched.
//!
//! A queue with nothing running fetches as soon as a slot is free. A queue
//! with handlers still running waits until `fetch_batch_fraction` of its
//! slots are free (or a free slot has waited `fetch_delay`), so that one
//! round trip brings several messages rather than one per finished handler.
//! A queue is polled again at once after a full batch, else after a NOTIFY
//! or the poll interval.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::events::WorkerStats;
use super::jobs::Job;
use super::leases::LeaseKeeper;
use super::options::Prefetch;
use super::prefetch::{Ahead, Prefetcher, Waiting};
use super::reconnect::Reconnect;
use super::slots::{Permits, Place, QueueSlots, Slots};
use super::wait_level;
use crate::db::Db;
use crate::error::{Error, ErrorKind, Result};
use crate::message::Message;

/// One served queue.
pub(super) struct QueueState {
    pub(super) name: String,
    /// Lease length asked for at dequeue.
    pub(super) vt: Duration,
    /// Attempts after which a failure is final (the queue's, or the
    /// worker's when lower).
    pub(super) max_attempts: i32,
    /// The worker's own limit when lower than the queue's: `message_fail`
    /// knows only the queue's, so reaching this one forces dead.
    pub(super) worker_max_attempts: Option<i32>,
    /// Woken by NOTIFY (and after every LISTEN reconnect).
    pub(super) wake: Arc<Notify>,
    /// Its own limit of handlers running, and its messages holding a slot.
    pub(super) slots: QueueSlots,
    /// Its prefetched messages and handler durations.
    pub(super) ahead: Ahead,
}

/// What a fetch loop hands to the worker.
pub(super) enum Fetched {
    /// Leased messages to start, each with its job, Ready (their leases are
    /// already with the lease keeper).
    Messages(Vec<(Message, Job)>),
    /// Prefetched messages to give back: none started within
    /// `prefetch_max_wait` of their dequeue.
    GiveBack(Vec<Waiting>),
    Fatal(Error),
}

/// What every fetch loop of a worker shares.
pub(super) struct Fetcher {
    pub(super) db: Db,
    /// The worker's slots and places.
    pub(super) slots: Slots,
    pub(super) worker_id: i64,
    pub(super) batch_size: usize,
    pub(super) poll_interval: Duration,
    /// Longest wait of a free slot for a queue's `min_batch`.
    pub(super) fetch_delay: Duration,
    /// [`Prefetch::Auto`]: time a prefetched message waits before it is given back.
    pub(super) prefetch_max_wait: Duration,
    pub(super) stats: Arc<WorkerStats>,
    /// Keeps the leases of fetched messages, from their dequeue on.
    pub(super) keeper: Arc<LeaseKeeper>,
    pub(super) prefetcher: Prefetcher,
    pub(super) out: mpsc::UnboundedSender<Fetched>,
}

/// Lease up to `n` messages of `q`: one `message_dequeue`, which archives
/// exhausted rows as dead itself and fills the batch past them.
/// Also says, when the queue's rate limit kept the batch short, how long
/// until its next token is due.
async fn dequeue(
    db: &Db,
    q: &QueueState,
    n: usize,
    worker_id: i64,
) -> Result<(Vec<Message>, Option<Duration>)> {
    let vt = Some(q.vt).filter(|v| !v.is_zero());
    let got = db.message_dequeue(&q.name, n as i64, vt, Some(worker_id)).await?;
    // Rows that cannot be read go to the archive alone; the batch's others run.
    crate::consumer::bury_undecodable(db, &q.name, &got.undecodable, Some(worker_id)).await;
    if got.dead > 0 {
        log::warn!(
            "pgqrs worker: {} message(s) of {:?} had used up their attempts and went to the archive as dead",
            got.dead,
            q.name
        );
    }
    Ok((got.messages, got.retry_after))
}

impl Fetcher {
    /// Places under the held bound for the messages a dequeue of `q` with
    /// `free` slots may take ahead (see [`Prefetcher::reserve`]), reserved
    /// until the dequeue has returned.
    fn places(&self, q: &QueueState, free: usize) -> Vec<Place> {
        let extra = self.prefetcher.reserve(&q.ahead, self.batch_size - free);
        let places = self.slots.try_acquire_places(extra);
        self.prefetcher.unreserve(extra - places.len());
        places
    }

    /// The permits for the next dequeue of `q`, and places for the messages
    /// it may take ahead: wait for one set of permits, take every other free
    /// one (up to `batch_size`); while some of the queue's handlers still run,
    /// wait for `min_batch` sets, at most `fetch_delay` after the
    /// first. With no slot free, a dequeue of messages ahead only goes at
    /// once if it takes that many (or the queue has nothing running), as in
    /// the Python worker: they start as slots free up, without a round trip.
    /// None: stopping.
    async fn permits(
        &self,
        q: &QueueState,
        stop: &mut watch::Receiver<u8>,
    ) -> Option<(Vec<Permits>, Vec<Place>)> {
        let enough = q.slots.min_batch.min(self.batch_size);
        let first = match self.slots.try_acquire(&q.slots) {
            Some(p) => p,
            None => {
                let places = self.places(q, 0);
                if !places.is_empty() && (places.len() >= enough || q.slots.idle()) {
                    return Some((Vec::new(), places));
                }
                self.prefetcher.unreserve(places.len());
                drop(places);
                tokio::select! {
                    p = self.slots.acquire(&q.slots) => p,
                    _ = wait_level(stop, 1) => return None,
                }
            }
        };
        let mut permits = vec![first];
        let deadline = Instant::now() + self.fetch_delay;
        loop {
            while permits.len() < self.batch_size {
                match self.slots.try_acquire(&q.slots) {
                    Some(p) => permits.push(p),
                    None => break,
                }
            }
            if permits.len() >= enough || q.slots.idle() {
                let places = self.places(q, permits.len());
                return Some((permits, places));
            }
            // Handlers still running: let a few more slots free up first.
            tokio::select! {
                p = self.slots.acquire(&q.slots) => permits.push(p),
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
            let slot = tokio::select! {
                s = self.slots.acquire_slot(&q.slots) => s,
                _ = tokio::time::sleep_until(give_back_at.unwrap_or_else(Instant::now)), if give_back_at.is_some() => {
                    let stale: Vec<Waiting> = q.ahead.ready.lock().unwrap().drain(..).collect();
                    q.ahead.slowed(self.prefetch_max_wait);
                    self.prefetcher.unreserve(stale.len());
                    log::info!(
                        "pgqrs worker: giving back {} prefetched message(s) of {:?}: none started within {:?}",
                        stale.len(),
                        q.name,
                        self.prefetch_max_wait
                    );
                    return self.out.send(Fetched::GiveBack(stale)).is_ok();
                }
                _ = wait_level(stop, 1) => return false,
            };
            // No await from here to the send: a message is in the ready
            // queue (given back by the worker if it stops) or with the worker.
            let Some(mut w) = q.ahead.ready.lock().unwrap().pop_front() else { break };
            self.prefetcher.unreserve(1);
            w.job.assign(slot);
            if self.out.send(Fetched::Messages(vec![(w.msg, w.job)])).is_err() {
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
            let (messages, throttled) = match dequeue(&self.db, &q, asked, self.worker_id).await {
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
                self.keeper.hold(m, q.vt, sent);
            }
            // The first messages have slots; the rest (if any) wait for one.
            let mut messages = messages.into_iter();
            let items: Vec<_> = permits
                .drain(..)
                .zip(messages.by_ref())
                .map(|(p, m)| (m, Job::ready(p, &q.slots.active, &self.stats)))
                .collect();
            let waiting: Vec<Waiting> = messages
                .zip(places.drain(..))
                .map(|(msg, place)| Waiting {
                    msg,
                    job: Job::prefetched(place, &q.slots.active, &self.stats),
                })
                .collect();
            self.prefetcher.unreserve(asked - free - waiting.len());
            if !waiting.is_empty() {
                self.stats.prefetched.fetch_add(waiting.len() as u64, Ordering::SeqCst);
                if self.prefetcher.mode == Prefetch::Auto {
                    give_back_at = Some(Instant::now() + self.prefetch_max_wait);
                }
                q.ahead.ready.lock().unwrap().extend(waiting);
            }
            if !items.is_empty() && self.out.send(Fetched::Messages(items)).is_err() {
                return;
            }
            drop((permits, places));
            if let Some(wait) = throttled {
                // The queue's rate limit cut the batch short: the dequeue said
                // when its next token is due. Sleep until then (a NOTIFY
                // cannot bring a token earlier), not a poll.
                if !self.start_waiting(&q, &mut stop, give_back_at.take()).await {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = wait_level(&mut stop, 1) => return,
                }
            }
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
