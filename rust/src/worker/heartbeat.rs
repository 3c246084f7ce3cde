//! The workers table: registering, heartbeats (`worker_alive`, which
//! registers a pruned worker again under its id, in SQL), and periodic
//! `worker_reap`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

use super::options::WorkerOptions;
use super::reconnect::Reconnect;
use crate::db::Db;
use crate::error::Result;

/// A registered worker: its id, and what its registration recorded, sent
/// again with every heartbeat so that `worker_alive` can register the worker
/// again under the same id if its row was pruned (silent past the prune age).
#[derive(Debug, Clone)]
pub(super) struct Registration {
    pub(super) id: i64,
    hostname: String,
    pid: i32,
    queues: Vec<String>,
    listening: bool,
}

/// Register the worker; `listening`: it LISTENs for enqueues (enqueue
/// statements send their NOTIFY only when a listening worker serves the queue).
pub(super) async fn register(db: &Db, queues: &[String], listening: bool) -> Result<Registration> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string());
    let pid = std::process::id() as i32;
    let id = db.worker_register(&hostname, pid, queues, listening).await?;
    Ok(Registration { id, hostname, pid, queues: queues.to_vec(), listening })
}

/// Record a heartbeat with `status` ('running' or 'stopping').
pub(super) async fn heartbeat_once(db: &Db, me: &Registration, status: &str) -> Result<()> {
    let beat = db.worker_alive(me.id, status, &me.hostname, me.pid, &me.queues, me.listening).await?;
    if beat.registered {
        log::warn!("pgqrs worker {}: its row was pruned; registered again under the same id", me.id);
    }
    Ok(())
}

/// Enforce the served queues' archive retention: `archive_prune` in batches,
/// again while a batch was full. Another worker pruning a queue (the
/// function's try-lock) or no retention: one statement, no wait.
pub(super) async fn prune_archives(db: &Db, queues: &[String], batch: usize) -> Result<()> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let mut total = 0;
    for queue in queues {
        while let Some(pruned) = db.archive_prune(queue, batch).await? {
            total += pruned;
            if pruned < i64::from(batch) {
                break;
            }
        }
    }
    if total > 0 {
        log::info!("pgqrs worker: pruned {total} archived message(s) past their queue's retention");
    }
    Ok(())
}

/// Heartbeat every `heartbeat_interval` and run `worker_reap` every
/// `reap_interval`, until `quit` is notified.
pub(super) async fn heartbeat(
    db: Db,
    me: Registration,
    opts: WorkerOptions,
    stopping: Arc<AtomicBool>,
    quit: Arc<Notify>,
    cancels: super::jobs::Cancels,
) {
    let ticker = |every: Duration| {
        let mut t = tokio::time::interval_at(Instant::now() + every, every);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    };
    let (mut beat, mut reap) = (ticker(opts.heartbeat_interval), ticker(opts.reap_interval));
    // The first heartbeat tick prunes (as in Python), then every interval.
    let mut prune =
        tokio::time::interval_at(Instant::now() + opts.heartbeat_interval, opts.archive_prune_interval);
    prune.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reconnect = Reconnect::default();
    loop {
        let (what, result) = tokio::select! {
            _ = quit.notified() => return,
            _ = beat.tick() => {
                let status = if stopping.load(Ordering::SeqCst) { "stopping" } else { "running" };
                let mut result = heartbeat_once(&db, &me, status).await;
                if result.is_ok() {
                    // The cancel poll: this worker's held messages whose
                    // cancellation was requested (an index probe of a partial
                    // index that is almost always empty).
                    result = db.message_cancelled(me.id).await.map(|held| {
                        for (id, lease) in held {
                            cancels.cancel(id, lease);
                        }
                    });
                }
                ("heartbeat", result)
            }
            _ = prune.tick() => ("archive_prune", prune_archives(&db, &me.queues, opts.archive_prune_batch).await),
            _ = reap.tick() => {
                let result = db.worker_reap(opts.worker_dead_after, opts.worker_prune_after).await.map(|(marked, pruned)| {
                    if marked + pruned > 0 {
                        log::info!("pgqrs worker: reaping marked {marked} silent worker(s) dead, pruned {pruned}");
                    }
                });
                ("worker_reap", result)
            }
        };
        match result {
            Ok(()) => {
                reconnect.succeeded();
            }
            Err(e) => {
                reconnect.failed();
                if reconnect.failures() == 1 {
                    log::warn!("pgqrs worker: {what} failed: {e}");
                } else {
                    log::debug!("pgqrs worker: {what} failed: {e}");
                }
            }
        }
    }
}
