//! Running schedules (as Python's `schedules.py`; docs/schedules.md):
//! declare at start, then tick. No leader: every worker that runs schedules
//! ticks. A tick is one statement (`schedule_due`) returning only what is
//! due; for each due schedule the worker computes the slots
//! ([`crate::schedule::plan`]) and calls `schedule_fire`, which records the
//! slots, enqueues their messages and moves next_slot in one transaction,
//! compare-and-set on the next_slot the tick read.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::defaults::{DEFAULT_SCHEDULE_CATCH_UP, DEFAULT_SCHEDULE_TICK};
use super::events::WorkerStats;
use super::wait_level;
use crate::db::Db;
use crate::error::{ErrorKind, Result};
use crate::schedule::{plan, Missed, ScheduleSpec, Timing};

/// The worker's schedules, upserted (idempotent: unchanged ones write nothing).
pub(super) async fn declare(db: &Db, specs: &[ScheduleSpec]) -> Result<()> {
    for spec in specs {
        db.schedule_upsert(spec, true).await?;
    }
    Ok(())
}

/// The tick loop, until the stop request.
pub(super) async fn run(db: Db, stats: Arc<WorkerStats>, mut stop: watch::Receiver<u8>) {
    loop {
        let delay = match tick(&db, &stats).await {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::Connection => {
                log::warn!("pgqrs worker: schedule tick failed (retrying): {e}");
                DEFAULT_SCHEDULE_TICK
            }
            Err(e) => {
                log::error!("pgqrs worker: schedule tick failed: {e}");
                DEFAULT_SCHEDULE_TICK
            }
        };
        stats.schedule_ticks.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = wait_level(&mut stop, 1) => return,
        }
    }
}

/// One tick: fire what is due; how long to sleep until the next.
pub(super) async fn tick(db: &Db, stats: &WorkerStats) -> Result<Duration> {
    let (due, now, mut upcoming) = db.schedule_due().await?;
    for row in due {
        let planned = Timing::new(row.cron.as_deref(), row.interval, &row.time_zone).and_then(|t| {
            let missed = Missed::parse(&row.missed)?;
            plan(&t, row.next_slot, row.last_slot, now, missed, DEFAULT_SCHEDULE_CATCH_UP)
        });
        let (slots, next_slot) = match planned {
            Ok(p) => p,
            Err(e) => {
                log::error!("pgqrs worker: schedule {:?} cannot be planned: {e}", row.name);
                continue;
            }
        };
        let done = db.schedule_fire(&row.name, &slots, next_slot, row.next_slot).await?;
        stats.scheduled.fetch_add(done.len() as u64, Ordering::Relaxed);
        if upcoming.is_none_or(|u| next_slot < u) {
            upcoming = Some(next_slot);
        }
    }
    let Some(upcoming) = upcoming else { return Ok(DEFAULT_SCHEDULE_TICK) };
    let until = (upcoming - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_millis(5);
    Ok(until.clamp(Duration::from_millis(5), DEFAULT_SCHEDULE_TICK))
}
