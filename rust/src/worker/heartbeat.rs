//! The workers table: registering, heartbeats, and periodic `worker_reap`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::types::Type;

use super::options::WorkerOptions;
use super::reconnect::Reconnect;
use crate::db::{col, Db};
use crate::error::Result;
use crate::queries::Query;

/// Register the worker; `listening`: it LISTENs for enqueues (enqueue
/// statements send their NOTIFY only when a listening worker serves the queue).
pub(super) async fn register(db: &Db, queues: &[String], listening: bool) -> Result<i64> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string());
    let pid = std::process::id() as i32;
    let queues = queues.to_vec();
    let rows = db
        .fetch(
            Query::WorkerRegister,
            &[
                (&hostname, Type::TEXT),
                (&pid, Type::INT4),
                (&queues, Type::TEXT_ARRAY),
                (&listening, Type::BOOL),
            ],
            None,
        )
        .await?;
    col(&rows[0], "id")
}

/// Record a heartbeat; false when the row is gone (pruned while silent).
pub(super) async fn heartbeat_once(db: &Db, id: i64, status: &str) -> Result<bool> {
    let status = status.to_string();
    let rows = db.fetch(Query::WorkerHeartbeat, &[(&id, Type::INT8), (&status, Type::TEXT)], None).await?;
    Ok(!rows.is_empty())
}

/// Heartbeat every `heartbeat_interval` and run `worker_reap` every
/// `reap_interval`, until `quit` is notified.
pub(super) async fn heartbeat(
    db: Db,
    id: Arc<AtomicI64>,
    queues: Vec<String>,
    opts: WorkerOptions,
    stopping: Arc<AtomicBool>,
    quit: Arc<Notify>,
) {
    let ticker = |every: Duration| {
        let mut t = tokio::time::interval_at(Instant::now() + every, every);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    };
    let (mut beat, mut reap) = (ticker(opts.heartbeat_interval), ticker(opts.reap_interval));
    let mut reconnect = Reconnect::default();
    loop {
        let (what, result) = tokio::select! {
            _ = quit.notified() => return,
            _ = beat.tick() => {
                let status = if stopping.load(Ordering::SeqCst) { "stopping" } else { "running" };
                let result = match heartbeat_once(&db, id.load(Ordering::Relaxed), status).await {
                    Ok(true) => Ok(()),
                    Ok(false) => register(&db, &queues, !opts.poll_only).await.map(|new| {
                        log::warn!("pgqrs worker: its row was pruned; registered again as worker {new}");
                        id.store(new, Ordering::Relaxed);
                    }),
                    Err(e) => Err(e),
                };
                ("heartbeat", result)
            }
            _ = reap.tick() => {
                let (dead, prune) = (opts.worker_dead_after.as_secs_f64(), opts.worker_prune_after.as_secs_f64());
                let result = db
                    .fetch(Query::WorkerReap, &[(&dead, Type::FLOAT8), (&prune, Type::FLOAT8)], None)
                    .await
                    .and_then(|rows| {
                        let (marked, pruned): (i64, i64) = (col(&rows[0], "marked_dead")?, col(&rows[0], "pruned")?);
                        if marked + pruned > 0 {
                            log::info!("pgqrs worker: reaping marked {marked} silent worker(s) dead, pruned {pruned}");
                        }
                        Ok(())
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
