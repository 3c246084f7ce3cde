//! Lease keeping: extend the leases of handlers that run long.
//!
//! A lease lasts the queue's (or the worker's) visibility timeout. Once a
//! handler has held its message for `lease_extend_at` of that, its lease is
//! extended by a whole timeout again, the due messages together in one
//! `message_extend` statement (as Python's `LeaseKeeper`). Local time only
//! measures elapsed durations (a monotonic clock, started just before the
//! statement that set the lease, so the estimate errs early); the lease
//! itself is always set by the database's clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::reconnect::Reconnect;
use crate::calls::Fence;
use crate::db::Db;
use crate::message::Message;
use crate::metrics::WorkerMetrics;

/// Shortest pause between two checks (very short leases).
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(50);

struct Held {
    id: i64,
    /// Its queue (metric attribute).
    queue: String,
    /// How long the lease lasts from `since`.
    vt: Duration,
    /// Just before the statement that set the lease.
    since: Instant,
}

/// The leases due for extension by the same duration.
#[derive(Default)]
struct Due {
    ids: Vec<i64>,
    leases: Vec<Uuid>,
    queues: Vec<String>,
}

#[derive(Default)]
struct Leases {
    held: HashMap<Uuid, Held>,
    /// The lease held for each message id.
    current: HashMap<i64, Uuid>,
}

pub(super) struct LeaseKeeper {
    db: Db,
    extend_at: f64,
    check_interval: Duration,
    leases: Mutex<Leases>,
    /// Rung by a lease shorter than the ones the current pause was made for.
    changed: Notify,
    /// The current pause, in nanoseconds.
    sleeping: AtomicU64,
    /// Extensions and lost leases (feature `otel`).
    metrics: WorkerMetrics,
    /// Flags a running delivery whose extend answered cancelled.
    pub(super) cancels: super::jobs::Cancels,
}

impl LeaseKeeper {
    pub(super) fn new(
        db: Db,
        extend_at: f64,
        check_interval: Duration,
        metrics: WorkerMetrics,
    ) -> LeaseKeeper {
        LeaseKeeper {
            db,
            extend_at,
            check_interval,
            leases: Mutex::default(),
            changed: Notify::new(),
            sleeping: AtomicU64::new(u64::MAX),
            metrics,
            cancels: super::jobs::Cancels::default(),
        }
    }

    /// Keep the lease of `msg`, set for `vt` by a statement sent at `since`.
    pub(super) fn hold(&self, msg: &Message, vt: Duration, since: Instant) {
        let (id, lease) = (msg.id, msg.lease.unwrap_or_default());
        let mut l = self.leases.lock().unwrap();
        if let Some(older) = l.current.insert(id, lease).filter(|older| *older != lease) {
            // This worker got the message again: its earlier lease is gone.
            if l.held.remove(&older).is_some() {
                self.lost(id, &msg.queue);
            }
        }
        l.held.insert(lease, Held { id, queue: msg.queue.clone(), vt, since });
        drop(l);
        if (self.pause_for(vt).as_nanos() as u64) < self.sleeping.load(Ordering::SeqCst) {
            self.changed.notify_one(); // a shorter lease: check sooner
        }
    }

    /// Stop keeping `lease` (its outcome is written, or it was released).
    pub(super) fn drop_lease(&self, id: i64, lease: Uuid) {
        let mut l = self.leases.lock().unwrap();
        if l.held.remove(&lease).is_some() && l.current.get(&id) == Some(&lease) {
            l.current.remove(&id);
        }
    }

    /// How long to sleep: often enough for the shortest lease held.
    fn pause(&self) -> Duration {
        let shortest = self.leases.lock().unwrap().held.values().map(|h| h.vt).min();
        shortest.map_or(self.check_interval, |vt| self.pause_for(vt))
    }

    fn pause_for(&self, vt: Duration) -> Duration {
        vt.mul_f64((1.0 - self.extend_at) / 4.0).min(self.check_interval).max(MIN_CHECK_INTERVAL)
    }

    /// Extend due leases until the task is aborted.
    pub(super) async fn run(&self) {
        let mut reconnect = Reconnect::default();
        let mut last = Instant::now();
        loop {
            // A shorter lease shortens the current pause; nothing postpones it.
            let pause = self.pause();
            self.sleeping.store(pause.as_nanos() as u64, Ordering::SeqCst);
            tokio::select! {
                _ = self.changed.notified() => continue,
                _ = tokio::time::sleep_until(last + pause) => {}
            }
            last = Instant::now();
            self.extend_due(&mut reconnect).await;
        }
    }

    async fn extend_due(&self, reconnect: &mut Reconnect) {
        let now = Instant::now();
        let mut by_vt: HashMap<Duration, Due> = HashMap::new();
        {
            let l = self.leases.lock().unwrap();
            for (lease, h) in &l.held {
                if now >= h.since + h.vt.mul_f64(self.extend_at) {
                    let group = by_vt.entry(h.vt).or_default();
                    group.ids.push(h.id);
                    group.leases.push(*lease);
                    group.queues.push(h.queue.clone());
                }
            }
        }
        for (vt, Due { ids, leases, queues }) in by_vt {
            let sent = Instant::now();
            let rows = match self.db.message_extend(&ids, &leases, vt, None).await {
                Ok(rows) => rows,
                Err(e) => {
                    reconnect.failed();
                    if reconnect.failures() == 1 {
                        log::warn!("pgqrs worker: extending {} lease(s) failed, will retry: {e}", ids.len());
                    } else {
                        log::debug!("pgqrs worker: extending {} lease(s) failed, will retry: {e}", ids.len());
                    }
                    return;
                }
            };
            if reconnect.succeeded() {
                log::info!("pgqrs worker: lease extensions work again");
            }
            // Cancelled: extended, and Admin::cancel asked to stop the handler.
            let ok: std::collections::HashSet<i64> = rows
                .iter()
                .filter(|r| r.outcome == Fence::Ok || r.outcome == Fence::Cancelled)
                .map(|r| r.id)
                .collect();
            let cancelled: std::collections::HashSet<i64> =
                rows.iter().filter(|r| r.outcome == Fence::Cancelled).map(|r| r.id).collect();
            let mut l = self.leases.lock().unwrap();
            for ((id, lease), queue) in ids.into_iter().zip(leases).zip(queues) {
                if cancelled.contains(&id) {
                    self.cancels.cancel(id, lease);
                }
                if ok.contains(&id) {
                    if let Some(h) = l.held.get_mut(&lease) {
                        h.since = sent;
                    }
                    self.metrics.leases_extended(&queue, 1);
                    log::debug!("pgqrs worker: extended the lease of message {id} by {vt:?}");
                } else if l.held.remove(&lease).is_some() {
                    if l.current.get(&id) == Some(&lease) {
                        l.current.remove(&id);
                    }
                    self.lost(id, &queue);
                }
            }
        }
    }
}

impl LeaseKeeper {
    fn lost(&self, id: i64, queue: &str) {
        self.metrics.lease_lost(queue);
        log::warn!(
            "pgqrs worker: lost the lease of message {id} (queue {queue:?}): it expired and may be \
             running elsewhere"
        );
    }
}
