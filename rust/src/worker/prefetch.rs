//! Prefetch sizing, a policy the fetcher calls: a dequeue may lease
//! messages beyond the free slots, which wait in the worker (each holding a
//! place under the held bound, but no handler slot) and start, before the
//! queue's next dequeue, as slots free up. As the Python worker's:
//! [`Prefetch::Auto`] takes only what the queue's handlers are expected to
//! start within `prefetch_horizon`, from their running average duration, so
//! slow handlers get none and an idle worker elsewhere is not kept from a
//! message.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::jobs::Job;
use super::options::{Prefetch, WorkerOptions};
use crate::message::Message;

/// A prefetched message waiting for a slot (its job Prefetched).
pub(super) struct Waiting {
    pub(super) msg: Message,
    pub(super) job: Job,
}

/// The settings of [`Prefetch::Auto`] (from [`WorkerOptions`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct AutoPolicy {
    /// Work fetched ahead.
    pub(super) horizon: Duration,
    /// Most messages ahead per slot.
    pub(super) per_slot: usize,
    /// Weight of each handler's duration in the running average.
    pub(super) duration_weight: f64,
}

impl AutoPolicy {
    pub(super) fn of(opts: &WorkerOptions) -> AutoPolicy {
        AutoPolicy {
            horizon: opts.prefetch_horizon,
            per_slot: opts.prefetch_per_slot,
            duration_weight: opts.prefetch_duration_weight,
        }
    }
}

/// One queue's prefetch state.
pub(super) struct Ahead {
    /// The most of this queue's handlers running at once (its limit, at most
    /// the worker's concurrency).
    slots: usize,
    policy: AutoPolicy,
    /// Running average of its handlers' durations; None before one returned.
    duration: Mutex<Option<Duration>>,
    /// Its prefetched messages, in dequeue order. The fetch loop starts them;
    /// the worker gives back those left when it stops.
    pub(super) ready: Mutex<VecDeque<Waiting>>,
}

impl Ahead {
    pub(super) fn new(slots: usize, policy: AutoPolicy) -> Ahead {
        Ahead { slots, policy, duration: Mutex::new(None), ready: Mutex::default() }
    }

    /// Auto: the messages this queue's handlers are expected to start within
    /// the horizon. Each slot frees up once per average duration, so they
    /// start about slots x horizon / duration in that time; at most
    /// `per_slot` per slot, none before a handler returned.
    fn expected(&self) -> usize {
        let Some(duration) = *self.duration.lock().unwrap() else { return 0 };
        let cap = self.policy.per_slot * self.slots;
        let work = self.slots as f64 * self.policy.horizon.as_secs_f64();
        if duration.as_secs_f64() * cap as f64 <= work {
            cap
        } else {
            (work / duration.as_secs_f64()) as usize
        }
    }

    /// A handler returned after `took`: its weight in the running average.
    pub(super) fn finished(&self, took: Duration) {
        let mut d = self.duration.lock().unwrap();
        *d = Some(match *d {
            None => took,
            Some(avg) => {
                avg.mul_f64(1.0 - self.policy.duration_weight) + took.mul_f64(self.policy.duration_weight)
            }
        });
    }

    /// No slot freed up for a prefetched message in `waited`: the handlers
    /// last at least that long (until they return faster), so nothing more
    /// is fetched ahead.
    pub(super) fn slowed(&self, waited: Duration) {
        let mut d = self.duration.lock().unwrap();
        *d = Some(d.map_or(waited, |avg| avg.max(waited)));
    }

    /// Some prefetched message waits.
    pub(super) fn has_waiting(&self) -> bool {
        !self.ready.lock().unwrap().is_empty()
    }
}

/// The worker's prefetch rule, and its count of messages held ahead.
pub(super) struct Prefetcher {
    pub(super) mode: Prefetch,
    /// Prefetched messages waiting, plus those running dequeues may bring (all queues).
    waiting: Mutex<usize>,
}

impl Prefetcher {
    pub(super) fn new(mode: Prefetch) -> Prefetcher {
        Prefetcher { mode, waiting: Mutex::new(0) }
    }

    /// Reserve the messages a dequeue of `q` may take beyond its free slots,
    /// at most `room`: none while some of `q`'s wait, at most the prefetch
    /// (fixed, or what `q`'s handlers are expected to start) minus those
    /// already waiting in all queues. Give back what the dequeue did not use
    /// with [`Prefetcher::unreserve`].
    pub(super) fn reserve(&self, q: &Ahead, room: usize) -> usize {
        if q.has_waiting() {
            return 0;
        }
        let allowed = match self.mode {
            Prefetch::Auto => q.expected(),
            Prefetch::Fixed(n) => n,
        };
        let mut waiting = self.waiting.lock().unwrap();
        let extra = allowed.saturating_sub(*waiting).min(room);
        *waiting += extra;
        extra
    }

    /// `n` reserved or waiting messages no longer wait (unused, started or given back).
    pub(super) fn unreserve(&self, n: usize) {
        *self.waiting.lock().unwrap() -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::{Ahead, AutoPolicy, Prefetcher};
    use crate::worker::{Prefetch, WorkerOptions};
    use std::time::Duration;

    fn ahead(slots: usize) -> Ahead {
        Ahead::new(slots, AutoPolicy::of(&WorkerOptions::default()))
    }

    #[test]
    fn auto_takes_what_the_slots_start_within_the_horizon() {
        let q = ahead(4);
        let p = Prefetcher::new(Prefetch::Auto);
        assert_eq!(p.reserve(&q, 100), 0, "none before a handler returned");
        q.finished(Duration::from_micros(10));
        assert_eq!(p.reserve(&q, 100), 24, "fast handlers: 6 per slot");
        p.unreserve(24);
        assert_eq!(p.reserve(&q, 5), 5, "within the room given");
        p.unreserve(5);
        let q = ahead(4);
        q.finished(Duration::from_millis(2));
        assert_eq!(p.reserve(&q, 100), 4, "4 slots x 2 ms / 2 ms");
        p.unreserve(4);
        q.finished(Duration::from_millis(10)); // weighs a quarter: average 4 ms
        assert_eq!(p.reserve(&q, 100), 2);
        p.unreserve(2);
        q.slowed(Duration::from_millis(500));
        assert_eq!(p.reserve(&q, 100), 0, "slowed: nothing ahead");
    }

    #[test]
    fn fixed_counts_every_queue_waiting() {
        let (a, b) = (ahead(2), ahead(2));
        let p = Prefetcher::new(Prefetch::Fixed(5));
        assert_eq!(p.reserve(&a, 3), 3);
        assert_eq!(p.reserve(&b, 100), 2, "5 in all");
        p.unreserve(5);
        assert_eq!(Prefetcher::new(Prefetch::Fixed(0)).reserve(&a, 100), 0);
    }
}
