//! The job table: one entry per message the worker holds, in an explicit
//! state (as Python's `jobs.py`).
//!
//! A message is held from its dequeue until its outcome is written:
//!
//! ```text
//! (dequeued) --> Prefetched --> Ready --> Running --> Settling --> (written: dropped)
//!      \______________________/^  \_________\_________/^
//!        (a free slot: Ready)       (given back or cut off at the stop)
//! ```
//!
//! * `Prefetched`: leased ahead of a free slot; holds a place under the held
//!   bound, no slot; waits in its queue's ready queue.
//! * `Ready`: holds a slot too; its handler is about to start.
//! * `Running`: its handler runs.
//! * `Settling`: the handler is over, or never started; the slot is free, the
//!   outcome waits in the completion backlog to be written, still holding
//!   the message's place.
//!
//! A [`Job`] owns the permits its state holds ([`super::slots`]), and every
//! move adjusts the counters that follow from them: the queue's active count
//! (slots held), [`WorkerStats::in_flight`] (places held) and
//! [`WorkerStats::running`] (handlers running). No other code counts held
//! messages. A move not listed in [`JobState::can_move`] is a bug and panics.
//! [`JobTable`] keeps the jobs whose handler is about to run or runs (Ready,
//! Running), by lease, so that the stop can release those it cuts off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::events::WorkerStats;
use super::slots::{Permits, Place, Slot};

/// Where a held message is (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobState {
    Prefetched,
    Ready,
    Running,
    Settling,
}

impl JobState {
    /// The legal moves (into the table and out of it are [`Job::prefetched`],
    /// [`Job::ready`] and dropping a settling job).
    fn can_move(self, to: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, to),
            (Prefetched, Ready)
                | (Prefetched, Settling)
                | (Ready, Running)
                | (Ready, Settling)
                | (Running, Settling)
        )
    }

    /// The state holds a slot.
    fn has_slot(self) -> bool {
        matches!(self, JobState::Ready | JobState::Running)
    }
}

/// One held message's state, with the permits it holds. Dropped once its
/// outcome is known (written, refused or given up on): its place is free then.
pub(super) struct Job {
    state: JobState,
    /// Its place under the held bound, from the dequeue until dropped.
    _place: Place,
    /// Its slot, while Ready or Running.
    slot: Option<Slot>,
    /// Its queue's count of messages holding a slot.
    active: Arc<AtomicUsize>,
    stats: Arc<WorkerStats>,
}

impl Job {
    /// A message dequeued ahead of a free slot.
    pub(super) fn prefetched(place: Place, active: &Arc<AtomicUsize>, stats: &Arc<WorkerStats>) -> Job {
        stats.in_flight.fetch_add(1, Ordering::SeqCst);
        Job {
            state: JobState::Prefetched,
            _place: place,
            slot: None,
            active: active.clone(),
            stats: stats.clone(),
        }
    }

    /// A message dequeued into a free slot.
    pub(super) fn ready(permits: Permits, active: &Arc<AtomicUsize>, stats: &Arc<WorkerStats>) -> Job {
        let mut job = Job::prefetched(permits.place, active, stats);
        job.assign(permits.slot);
        job
    }

    pub(super) fn state(&self) -> JobState {
        self.state
    }

    fn enter(&mut self, to: JobState) {
        assert!(
            self.state.can_move(to),
            "pgqrs worker bug: a job cannot move from {:?} to {to:?}",
            self.state
        );
        let (from, was_running) = (self.state.has_slot(), self.state == JobState::Running);
        if !from && to.has_slot() {
            self.active.fetch_add(1, Ordering::SeqCst);
        }
        if from && !to.has_slot() {
            self.slot = None;
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
        if to == JobState::Running {
            self.stats.running.fetch_add(1, Ordering::SeqCst);
        }
        if was_running {
            self.stats.running.fetch_sub(1, Ordering::SeqCst);
        }
        self.state = to;
    }

    /// Prefetched -> Ready: a slot freed up for it.
    pub(super) fn assign(&mut self, slot: Slot) {
        self.enter(JobState::Ready);
        self.slot = Some(slot);
    }

    /// Ready -> Running: its handler is called.
    pub(super) fn start(&mut self) {
        self.enter(JobState::Running);
    }

    /// -> Settling: its handler returned (or never starts); the slot is free.
    pub(super) fn settle(&mut self) {
        self.enter(JobState::Settling);
    }
}

impl Drop for Job {
    /// Out of the table: a job dropped before it settled (its task aborted)
    /// gives back its slot too.
    fn drop(&mut self) {
        if self.state != JobState::Settling {
            self.settle();
        }
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The cancel flags of the messages whose handler runs, by lease: the lease
/// keeper (an extend answering cancelled) and the heartbeat's cancel poll
/// set them; the job drops its handler's future.
#[derive(Clone, Default)]
pub(crate) struct Cancels(Arc<Mutex<HashMap<Uuid, crate::message::CancelFlag>>>);

impl Cancels {
    pub(crate) fn add(&self, lease: Uuid, flag: crate::message::CancelFlag) {
        self.0.lock().unwrap().insert(lease, flag);
    }

    pub(crate) fn remove(&self, lease: Uuid) {
        self.0.lock().unwrap().remove(&lease);
    }

    /// Flag the delivery holding `lease`; true if one here runs and was not flagged yet.
    pub(crate) fn cancel(&self, id: i64, lease: Uuid) -> bool {
        let flagged = self.0.lock().unwrap().get(&lease).map(|f| f.cancel()).unwrap_or(false);
        if flagged {
            log::info!("pgqrs worker: cancelling message {id}");
        }
        flagged
    }
}

/// The Ready and Running jobs, by lease (unique per delivery, unlike the
/// message id), with their message ids.
#[derive(Default)]
pub(super) struct JobTable {
    jobs: Mutex<HashMap<Uuid, (i64, Job)>>,
}

impl JobTable {
    /// Keep a Ready job (before its task is spawned: a task aborted before
    /// its first step still leaves the job to release).
    pub(super) fn track(&self, lease: Uuid, id: i64, job: Job) {
        debug_assert_eq!(job.state(), JobState::Ready);
        self.jobs.lock().unwrap().insert(lease, (id, job));
    }

    /// The job's handler starts: Ready -> Running.
    pub(super) fn start(&self, lease: Uuid) {
        if let Some((_, job)) = self.jobs.lock().unwrap().get_mut(&lease) {
            job.start();
        }
    }

    /// The job's handler returned: out of the table, Settling (its slot free).
    pub(super) fn finish(&self, lease: Uuid) -> Option<Job> {
        let (_, mut job) = self.jobs.lock().unwrap().remove(&lease)?;
        job.settle();
        Some(job)
    }

    /// Every job left (cut off by the stop), with its lease, its message id,
    /// and whether its handler ran; each Settling now.
    pub(super) fn drain(&self) -> Vec<(Uuid, i64, bool, Job)> {
        let jobs: Vec<_> = self.jobs.lock().unwrap().drain().collect();
        jobs.into_iter()
            .map(|(lease, (id, mut job))| {
                let ran = job.state() == JobState::Running;
                job.settle();
                (lease, id, ran, job)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::slots::{QueueSlots, Slots};

    #[test]
    fn each_move_keeps_the_counters() {
        let slots = Slots::new(2, 4);
        let q = QueueSlots::new(2, 2, 0.25);
        let stats = Arc::new(WorkerStats::default());
        let counts = || {
            (
                q.active.load(Ordering::SeqCst),
                stats.in_flight.load(Ordering::SeqCst),
                stats.running.load(Ordering::SeqCst),
            )
        };
        let mut ahead = Job::prefetched(slots.try_acquire_places(1).pop().unwrap(), &q.active, &stats);
        assert_eq!(counts(), (0, 1, 0));
        let table = JobTable::default();
        let lease = Uuid::from_u128(1);
        table.track(lease, 1, Job::ready(slots.try_acquire(&q).unwrap(), &q.active, &stats));
        assert_eq!(counts(), (1, 2, 0));
        table.start(lease);
        assert_eq!(counts(), (1, 2, 1));
        let done = table.finish(lease).unwrap();
        assert_eq!(done.state(), JobState::Settling);
        assert_eq!(counts(), (0, 2, 0), "the slot is free, the place still held");
        drop(done);
        assert_eq!(counts(), (0, 1, 0));
        ahead.assign(slots.try_acquire(&q).unwrap().slot);
        assert_eq!(counts(), (1, 1, 0));
        table.track(Uuid::from_u128(2), 2, ahead);
        table.start(Uuid::from_u128(2));
        let cut = table.drain();
        assert!(cut[0].2, "its handler ran");
        assert_eq!(counts(), (0, 1, 0));
        drop(cut);
        assert_eq!(counts(), (0, 0, 0));
    }

    #[test]
    #[should_panic(expected = "cannot move from Settling to Running")]
    fn a_settled_job_does_not_run() {
        let slots = Slots::new(1, 1);
        let q = QueueSlots::new(1, 1, 0.25);
        let stats = Arc::new(WorkerStats::default());
        let mut job = Job::ready(slots.try_acquire(&q).unwrap(), &q.active, &stats);
        job.settle();
        job.start();
    }
}
