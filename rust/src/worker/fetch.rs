//! Fetching: one loop per queue, one dequeue statement per round for as many
//! messages as there are free slots (the worker's concurrency is shared by
//! all its queues, so it never holds more messages than that).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_postgres::types::Type;

use super::backoff::Reconnect;
use super::wait_level;
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
    /// This queue's own limit, when it has one below the worker's.
    pub(super) slots: Option<Arc<Semaphore>>,
}

/// The slots one message holds: the worker's, and its queue's if limited.
pub(super) type Permits = (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>);

/// What a fetch loop hands to the worker.
pub(super) enum Fetched {
    /// Leased messages, with the time just before the dequeue was sent.
    Messages(Vec<(Message, Permits)>, Instant),
    Fatal(Error),
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

/// One queue's fetch loop: wait for a free slot, take every free one (up to
/// `batch_cap`), dequeue that many; poll again at once after a full batch,
/// else after a NOTIFY or the poll interval. Ends at the first stop request
/// (after its current dequeue, whose messages the worker gives back).
#[allow(clippy::too_many_arguments)]
pub(super) async fn fetch_loop(
    db: Db,
    q: Arc<QueueState>,
    slots: Arc<Semaphore>,
    worker_id: Arc<AtomicI64>,
    batch_cap: usize,
    poll_interval: Duration,
    out: mpsc::UnboundedSender<Fetched>,
    mut stop: watch::Receiver<u8>,
) {
    let mut reconnect = Reconnect::default();
    loop {
        // The queue's own slot first (if limited), then one of the worker's.
        let own = match &q.slots {
            None => None,
            Some(own) => tokio::select! {
                p = own.clone().acquire_owned() => Some(p.expect("the semaphore is never closed")),
                _ = wait_level(&mut stop, 1) => return,
            },
        };
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = wait_level(&mut stop, 1) => return,
        };
        let mut permits: Vec<Permits> = vec![(first, own)];
        while permits.len() < batch_cap {
            let own = match &q.slots {
                None => None,
                Some(own) => match own.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
            };
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push((p, own)),
                Err(_) => break,
            }
        }
        let asked = permits.len();
        let sent = Instant::now();
        let messages = match dequeue(&db, &q, asked, worker_id.load(Ordering::Relaxed)).await {
            Ok(m) => m,
            Err(e) => {
                drop(permits);
                if matches!(e.kind(), ErrorKind::QueueNotFound | ErrorKind::SchemaNotInstalled) {
                    let _ = out.send(Fetched::Fatal(e));
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
        if got > 0 {
            let items = messages.into_iter().zip(permits.drain(..got)).collect();
            if out.send(Fetched::Messages(items, sent)).is_err() {
                return;
            }
        }
        drop(permits);
        if got == asked {
            continue; // a full batch: more may be waiting
        }
        tokio::select! {
            _ = q.wake.notified() => {}
            _ = tokio::time::sleep(poll_interval) => {}
            _ = wait_level(&mut stop, 1) => return,
        }
    }
}
