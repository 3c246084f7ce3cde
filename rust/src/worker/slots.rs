//! Slot counting, shared by the fetcher, the job table and the completer (a
//! leaf: it uses nothing else of the worker).
//!
//! A message needs two permits to be fetched. A [`Slot`] is a unit of the
//! worker's `concurrency` (and of its queue's own limit, if it has one): it is
//! given back as soon as the message's handler returns. A [`Place`] is one
//! place under `concurrency + completion_backlog` messages held (running, or
//! waiting for their outcome to be written): it travels with the outcome to
//! the completer and is given back once the outcome is written (or given up
//! on). So handlers running never exceed `concurrency`, the worker never
//! holds more than `concurrency + completion_backlog` messages, and fetching
//! waits while the writes lag that far behind (backpressure). A prefetched
//! message holds a place but no slot.
//!
//! Which message holds what, and the counters that follow from it, is the
//! job table's business ([`super::jobs`]); this module only counts permits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const OPEN: &str = "the semaphore is never closed";

/// The worker's permits: `concurrency` slots and `concurrency +
/// completion_backlog` places.
pub(super) struct Slots {
    running: Arc<Semaphore>,
    held: Arc<Semaphore>,
}

/// One queue's share: its own limit of slots (when below the worker's), and
/// how many of its messages hold a slot now.
pub(super) struct QueueSlots {
    own: Option<Arc<Semaphore>>,
    /// This queue's messages holding a slot: handlers running, or about to
    /// start (kept by the job table).
    pub(super) active: Arc<AtomicUsize>,
    /// Free slots worth a dequeue while some of this queue's handlers still
    /// run (see [`min_batch`]).
    pub(super) min_batch: usize,
}

/// Free slots worth a dequeue while some of a queue's handlers still run:
/// `fraction` of the most that can run at once (`limit`, the queue's own, at
/// most the worker's `concurrency`), at least one.
pub(super) fn min_batch(limit: usize, concurrency: usize, fraction: f64) -> usize {
    ((limit.min(concurrency) as f64 * fraction).ceil() as usize).max(1)
}

impl QueueSlots {
    /// A queue that may run `limit` handlers of the worker's `concurrency`.
    pub(super) fn new(limit: usize, concurrency: usize, fetch_batch_fraction: f64) -> QueueSlots {
        QueueSlots {
            own: (limit < concurrency).then(|| Arc::new(Semaphore::new(limit))),
            active: Arc::new(AtomicUsize::new(0)),
            min_batch: min_batch(limit, concurrency, fetch_batch_fraction),
        }
    }

    /// None of this queue's messages holds a slot.
    pub(super) fn idle(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0
    }
}

/// A handler slot: one of the worker's `concurrency` (and of its queue's
/// limit, if it has one).
pub(super) struct Slot {
    _worker: OwnedSemaphorePermit,
    _own: Option<OwnedSemaphorePermit>,
}

/// One message's place under the held bound (`concurrency + completion_backlog`).
pub(super) struct Place {
    _permit: OwnedSemaphorePermit,
}

/// The permits one message needs to start: a slot and a place.
pub(super) struct Permits {
    pub(super) slot: Slot,
    pub(super) place: Place,
}

impl Slots {
    pub(super) fn new(concurrency: usize, held: usize) -> Slots {
        Slots { running: Arc::new(Semaphore::new(concurrency)), held: Arc::new(Semaphore::new(held)) }
    }

    /// A slot for one message of `q`, waiting for each permit: the queue's
    /// own first (if limited), then one of the worker's. Cancel-safe: a
    /// permit already taken is given back.
    pub(super) async fn acquire_slot(&self, q: &QueueSlots) -> Slot {
        let own = match &q.own {
            None => None,
            Some(own) => Some(own.clone().acquire_owned().await.expect(OPEN)),
        };
        let worker = self.running.clone().acquire_owned().await.expect(OPEN);
        Slot { _worker: worker, _own: own }
    }

    /// The permits for one message of `q`, waiting for each: a slot, then a
    /// place. Cancel-safe.
    pub(super) async fn acquire(&self, q: &QueueSlots) -> Permits {
        let slot = self.acquire_slot(q).await;
        let place = Place { _permit: self.held.clone().acquire_owned().await.expect(OPEN) };
        Permits { slot, place }
    }

    /// The permits for one message of `q` if all are free now.
    pub(super) fn try_acquire(&self, q: &QueueSlots) -> Option<Permits> {
        let own = match &q.own {
            None => None,
            Some(own) => Some(own.clone().try_acquire_owned().ok()?),
        };
        let worker = self.running.clone().try_acquire_owned().ok()?;
        let held = self.held.clone().try_acquire_owned().ok()?;
        Some(Permits { slot: Slot { _worker: worker, _own: own }, place: Place { _permit: held } })
    }

    /// Places for up to `n` prefetched messages, those free now.
    pub(super) fn try_acquire_places(&self, n: usize) -> Vec<Place> {
        (0..n)
            .map_while(|_| self.held.clone().try_acquire_owned().ok())
            .map(|p| Place { _permit: p })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dequeue_waits_for_a_quarter_of_the_slots_at_least_one() {
        assert_eq!(min_batch(8, 8, 0.25), 2);
        assert_eq!(min_batch(100, 8, 0.25), 2, "a queue's limit counts up to the worker's");
        assert_eq!(min_batch(16, 16, 0.25), 4);
        assert_eq!(min_batch(10, 16, 0.25), 3, "rounded up");
        assert_eq!(min_batch(3, 8, 0.25), 1);
        assert_eq!(min_batch(1, 1, 0.25), 1);
    }

    #[test]
    fn a_queue_limit_and_the_held_bound_are_counted() {
        let slots = Slots::new(2, 3);
        let q = QueueSlots::new(1, 2, 0.25);
        let first = slots.try_acquire(&q).expect("free");
        assert!(slots.try_acquire(&q).is_none(), "the queue's own limit of 1");
        let other = QueueSlots::new(2, 2, 0.25);
        let second = slots.try_acquire(&other).expect("the worker has a second slot");
        let spare = slots.try_acquire_places(5);
        assert_eq!(spare.len(), 1, "3 places, 2 taken");
        assert!(slots.try_acquire_places(1).is_empty());
        drop((first, second));
        assert!(slots.try_acquire(&q).is_some(), "given back when dropped");
    }
}
