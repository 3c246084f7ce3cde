//! One job: run the handler (keeping its lease), free its slot, decide what
//! to write, hand it to the completer (with the message's place under the
//! held bound) and count the outcome; and how handlers report failure.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::backoff::backoff;
use super::completer::{Action, CompleterHandle, Outcome, Settlement};
use super::events::{JobEvent, JobEventKind};
use super::fetch::{Held, Permits, QueueState, Running};
use super::leases::LeaseKeeper;
use super::prefetch::Waiting;
use super::WorkerStats;
use crate::db::Db;
use crate::message::Message;
use crate::payload::encode;

/// The error "type" recorded for an explicit retry (Python's `pgqrs.Retry`).
const RETRY_KIND: &str = "pgqrs.Retry";

/// Why a handler failed, and what to do about it. Any `std::error::Error`
/// converts into a retryable JobError, so handlers can use `?`.
#[derive(Debug)]
pub struct JobError {
    message: String,
    retry: Retry,
    /// Recorded as the error's "type".
    kind: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Retry {
    Backoff,
    After(Duration),
    GiveUp,
}

impl JobError {
    /// Retry later, with the worker's backoff.
    pub fn retry(message: impl std::fmt::Display) -> JobError {
        JobError { message: message.to_string(), retry: Retry::Backoff, kind: RETRY_KIND }
    }
    /// Retry after exactly `delay` (still dead after max_attempts).
    pub fn retry_after(message: impl std::fmt::Display, delay: Duration) -> JobError {
        JobError { message: message.to_string(), retry: Retry::After(delay), kind: RETRY_KIND }
    }
    /// Do not retry: archive the message as `dead` now.
    pub fn give_up(message: impl std::fmt::Display) -> JobError {
        JobError { message: message.to_string(), retry: Retry::GiveUp, kind: "pgqrs.Abort" }
    }
    /// The error text recorded on the message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError { message: e.to_string(), retry: Retry::Backoff, kind: std::any::type_name::<E>() }
    }
}

/// Everything a spawned job needs.
pub(super) struct JobContext<F> {
    /// Extends the leases of the messages held.
    pub(super) keeper: Arc<LeaseKeeper>,
    /// Per-job events for subscribers.
    pub(super) events: broadcast::Sender<JobEvent>,
    pub(super) handler: F,
    pub(super) db: Db,
    pub(super) worker_id: Arc<AtomicI64>,
    pub(super) retry_base: Duration,
    pub(super) retry_max: Duration,
    pub(super) retry_jitter: f64,
    pub(super) stats: Arc<WorkerStats>,
    /// Messages of jobs whose outcome is not with the completer yet, by
    /// lease. Released if shutdown cuts them off (refunded when the handler
    /// never started).
    pub(super) tracked: Mutex<HashMap<Uuid, Tracked>>,
    pub(super) completer: CompleterHandle,
}

/// A message whose job has not handed its outcome to the completer yet.
pub(super) struct Tracked {
    pub(super) id: i64,
    /// Its handler has started.
    pub(super) started: bool,
    /// Its place under the held bound, handed to the completer with the outcome.
    pub(super) held: Held,
}

/// What a written outcome counts as.
#[derive(Debug)]
enum Event {
    Completed,
    Retried { delay: Duration, error: String },
    Dead { error: String },
}

/// Counts a handler as running (in [`WorkerStats::running`]) until it
/// returns, or until dropped when the job is aborted at shutdown.
struct HandlerRunning<'a> {
    stats: &'a WorkerStats,
    running: bool,
}

impl<'a> HandlerRunning<'a> {
    fn new(stats: &'a WorkerStats) -> Self {
        stats.running.fetch_add(1, Ordering::SeqCst);
        HandlerRunning { stats, running: true }
    }

    fn done(&mut self) {
        if std::mem::take(&mut self.running) {
            self.stats.running.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for HandlerRunning<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

impl<F, Fut, R> JobContext<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    /// Track `msg` (before its job is spawned: a job aborted before its first
    /// step is still released at shutdown), with its place under the held bound.
    pub(super) fn track(&self, msg: &Message, held: Held) {
        let tracked = Tracked { id: msg.id, started: false, held };
        self.tracked.lock().unwrap().insert(msg.lease.unwrap_or_default(), tracked);
    }

    /// Run the handler of a tracked message on the handler slot `slot`.
    pub(super) async fn process(self: Arc<Self>, q: Arc<QueueState>, msg: Message, slot: Running) {
        let lease = msg.lease.unwrap_or_default();
        if let Some(t) = self.tracked.lock().unwrap().get_mut(&lease) {
            t.started = true;
        }
        let mut running = HandlerRunning::new(&self.stats);
        self.emit(JobEventKind::Started, &msg, None, None);
        let begun = tokio::time::Instant::now();
        let outcome = self.run_handler(&msg).await;
        q.ahead.finished(begun.elapsed());
        let (action, event) = self.decide(&q, &msg, outcome);
        // The handler returned: its slot is free at once; the outcome waits
        // in the completion backlog, holding the message's place under the
        // held bound until it is written. No await between these: a job cut
        // off at shutdown is either still tracked (and released) or its
        // outcome is with the completer.
        running.done();
        drop(slot);
        let held = self.tracked.lock().unwrap().remove(&lease).map(|t| t.held);
        let written = self.completer.submit(Settlement::new(msg.id, lease, action).holding(held));
        let outcome = written.await.unwrap_or(Outcome::Unwritten);
        self.keeper.drop_lease(msg.id, lease);
        match outcome {
            Outcome::Ok => match event {
                Event::Completed => {
                    self.stats.completed.fetch_add(1, Ordering::SeqCst);
                    self.emit(JobEventKind::Completed, &msg, None, None);
                }
                Event::Retried { delay, error } => {
                    self.stats.retried.fetch_add(1, Ordering::SeqCst);
                    self.emit(JobEventKind::Retried, &msg, Some(error), Some(delay));
                }
                Event::Dead { error } => {
                    self.stats.dead.fetch_add(1, Ordering::SeqCst);
                    self.emit(JobEventKind::Dead, &msg, Some(error), None);
                }
            },
            Outcome::LeaseLost => {
                self.stats.lease_lost.fetch_add(1, Ordering::SeqCst);
                self.emit(JobEventKind::LeaseLost, &msg, None, None);
                log::warn!(
                    "pgqrs worker: message {} (queue {:?}): lease lost before its outcome ({event:?}) \
                     was written; another consumer has it now",
                    msg.id,
                    q.name
                );
            }
            Outcome::NotFound => log::warn!(
                "pgqrs worker: message {} (queue {:?}) was gone before its outcome ({event:?}) was written",
                msg.id,
                q.name
            ),
            Outcome::Unwritten => {} // logged by the completer
        }
    }

    fn emit(&self, kind: JobEventKind, msg: &Message, error: Option<String>, delay: Option<Duration>) {
        // No subscriber is no error.
        let _ = self.events.send(JobEvent {
            kind,
            message_id: msg.id,
            queue: msg.queue.clone(),
            attempt: msg.attempts,
            worker_id: self.worker_id.load(Ordering::Relaxed),
            error,
            delay,
        });
    }

    /// The handler's outcome (the lease keeper extends the lease meanwhile).
    async fn run_handler(&self, msg: &Message) -> std::result::Result<Value, JobError> {
        let out = AssertUnwindSafe((self.handler)(msg.clone())).catch_unwind().await;
        match out {
            Ok(Ok(r)) => serde_json::to_value(r).map_err(|e| JobError {
                message: format!("handler result is not JSON: {e}"),
                retry: Retry::Backoff,
                kind: "pgqrs.PayloadError",
            }),
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "handler panicked".to_string());
                Err(JobError { message: text, retry: Retry::Backoff, kind: "panic" })
            }
        }
    }

    /// What to write for the handler's `outcome`, and what it counts as once written.
    fn decide(
        &self,
        q: &QueueState,
        msg: &Message,
        outcome: std::result::Result<Value, JobError>,
    ) -> (Action, Event) {
        let max = self.db.config.max_payload_bytes();
        let failed = match outcome {
            Ok(Value::Null) => {
                return (Action::Archive { status: "completed", result: None, error: None }, Event::Completed)
            }
            Ok(value) => match encode(&value, "result", max) {
                Ok(result) => {
                    return (
                        Action::Archive { status: "completed", result: Some(result), error: None },
                        Event::Completed,
                    )
                }
                Err(e) => {
                    JobError { message: e.to_string(), retry: Retry::Backoff, kind: "pgqrs.PayloadError" }
                }
            },
            Err(e) => e,
        };
        let error = self.error_json(msg, &failed);
        // As in Python: asking for a retry is not a failure; anything else is.
        if failed.kind != RETRY_KIND {
            self.emit(JobEventKind::Failed, msg, Some(failed.message.clone()), None);
        }
        if failed.retry == Retry::GiveUp || msg.attempts >= q.max_attempts {
            log::warn!(
                "pgqrs worker: message {} (queue {:?}) is dead after {} attempt(s): {}",
                msg.id,
                q.name,
                msg.attempts,
                failed.message
            );
            return (
                Action::Archive { status: "dead", result: None, error },
                Event::Dead { error: failed.message },
            );
        }
        let delay = match failed.retry {
            Retry::After(d) => d,
            _ => backoff(self.retry_base, self.retry_max, self.retry_jitter, msg.attempts),
        };
        log::warn!(
            "pgqrs worker: message {} (queue {:?}) failed on attempt {}/{}, retrying in {delay:?}: {}",
            msg.id,
            q.name,
            msg.attempts,
            q.max_attempts,
            failed.message
        );
        (
            Action::Release { delay: delay.as_secs_f64(), error, refund: false },
            Event::Retried { delay, error: failed.message },
        )
    }

    /// The message's error record: the same fields as the Python worker's
    /// (Rust has no traceback to add); None if it cannot be stored.
    fn error_json(&self, msg: &Message, e: &JobError) -> Option<String> {
        let record = json!({
            "type": e.kind,
            "message": e.message,
            "attempt": msg.attempts,
            "worker_id": self.worker_id.load(Ordering::Relaxed),
        });
        encode(&record, "error", self.db.config.max_payload_bytes()).ok()
    }

    /// Give back messages fetched but not started: released at once, their
    /// attempt refunded. Returns how many.
    pub(super) fn give_back(&self, items: Vec<(Message, Permits)>) -> usize {
        let waiting = items.into_iter().map(|(msg, Permits { running, held })| {
            drop(running);
            Waiting { msg, held }
        });
        self.give_back_waiting(waiting.collect())
    }

    /// Give back prefetched messages that no handler started: released at
    /// once (no longer kept by the lease keeper), their attempt refunded.
    /// Returns how many.
    pub(super) fn give_back_waiting(&self, waiting: Vec<Waiting>) -> usize {
        let n = waiting.len();
        for Waiting { msg, held } in waiting {
            let lease = msg.lease.unwrap_or_default();
            self.keeper.drop_lease(msg.id, lease);
            let action = Action::Release { delay: 0.0, error: None, refund: true };
            self.completer.submit_detached(Settlement::new(msg.id, lease, action).holding(Some(held)));
        }
        n
    }

    /// Release the messages of jobs cut off at the end of the grace period:
    /// a handler that ran has its attempt counted, one that never started
    /// has it refunded.
    pub(super) fn release_cut_off(&self) {
        let cut: Vec<(Uuid, Tracked)> = self.tracked.lock().unwrap().drain().collect();
        if cut.is_empty() {
            return;
        }
        let ids: Vec<i64> = cut.iter().filter(|(_, t)| t.started).map(|(_, t)| t.id).collect();
        if !ids.is_empty() {
            log::warn!(
                "pgqrs worker: releasing {} job(s) still running at the end of the grace period: {ids:?}",
                ids.len()
            );
        }
        let record = json!({
            "type": "WorkerStopped",
            "message": "the worker stopped before the handler finished",
            "worker_id": self.worker_id.load(Ordering::Relaxed),
        });
        let error = encode(&record, "error", self.db.config.max_payload_bytes()).ok();
        for (lease, t) in cut {
            let action = if t.started {
                Action::Release { delay: 0.0, error: error.clone(), refund: false }
            } else {
                Action::Release { delay: 0.0, error: None, refund: true }
            };
            self.completer.submit_detached(Settlement::new(t.id, lease, action).holding(Some(t.held)));
        }
    }
}
