//! Calling the handler: one job from its start to its written outcome (the
//! handler run with its lease kept, its slot freed when it returns, the
//! decision handed to the completer with the job, the outcome counted and
//! emitted once written).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use super::completer::{CompleterHandle, Outcome, Settlement};
use super::events::{JobEvent, JobEventKind, WorkerStats};
use super::fetcher::QueueState;
use super::jobs::JobTable;
use super::leases::LeaseKeeper;
use super::options::Backoff;
use super::outcome::{decide, Action, Decision, JobError};
use crate::db::Db;
use crate::message::Message;

/// Everything a spawned job needs.
pub(super) struct JobContext<F> {
    /// Extends the leases of the messages held.
    pub(super) keeper: Arc<LeaseKeeper>,
    /// Per-job events for subscribers.
    pub(super) events: broadcast::Sender<JobEvent>,
    pub(super) handler: F,
    pub(super) db: Db,
    pub(super) worker_id: i64,
    pub(super) backoff: Backoff,
    pub(super) stats: Arc<WorkerStats>,
    /// The jobs whose handler is about to run or runs (released if the stop
    /// cuts them off).
    pub(super) table: JobTable,
    pub(super) completer: CompleterHandle,
}

impl<F> JobContext<F> {
    pub(super) fn emit(
        &self,
        kind: JobEventKind,
        msg: &Message,
        error: Option<String>,
        delay: Option<Duration>,
    ) {
        // No subscriber is no error.
        let _ = self.events.send(JobEvent {
            kind,
            message_id: msg.id,
            queue: msg.queue.clone(),
            attempt: msg.attempts,
            worker_id: self.worker_id,
            error,
            delay,
        });
    }
}

impl<F, Fut, R> JobContext<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    /// Run the handler of a tracked (Ready) message of `q`.
    pub(super) async fn process(self: Arc<Self>, q: Arc<QueueState>, msg: Message) {
        let lease = msg.lease.unwrap_or_default();
        self.table.start(lease);
        self.emit(JobEventKind::Started, &msg, None, None);
        let begun = tokio::time::Instant::now();
        // Admin::cancel: the lease keeper or the heartbeat's cancel poll sets
        // the message's flag; the handler's future is dropped at its next await.
        self.keeper.cancels.add(lease, msg.cancel.clone());
        let mut msg = msg;
        msg.owner = crate::message::Owner(Some(self.db.clone()));
        let outcome = tokio::select! {
            out = self.run_handler(&msg) => Some(out),
            _ = msg.cancel.cancelled() => None,
        };
        self.keeper.cancels.remove(lease);
        q.ahead.finished(begun.elapsed());
        let max_payload = self.db.config.max_payload_bytes();
        let cancelled = outcome.is_none() || msg.is_cancelled();
        let decision = match outcome {
            // Cancelled: whatever the handler did, archive as cancelled.
            _ if cancelled => Decision {
                action: Action::Archive { status: "cancelled", result: None, error: None },
                error: None,
                failed: None,
            },
            Some(out) => {
                decide(out, msg.attempts, q.worker_max_attempts, self.backoff, max_payload, self.worker_id)
            }
            None => unreachable!("a dropped handler is cancelled"),
        };
        if let Some(error) = decision.failed {
            self.emit(JobEventKind::Failed, &msg, Some(error), None);
        }
        // The handler returned: its slot is free at once; the outcome waits
        // in the completion backlog, the job holding the message's place
        // until it is written. No await between these: a job cut off at
        // shutdown is either still in the table (and released) or its
        // outcome is with the completer.
        let job = self.table.finish(lease);
        let written = self.completer.submit(Settlement::new(msg.id, lease, decision.action).holding(job));
        let outcome = written.await.unwrap_or(Outcome::Unwritten);
        self.keeper.drop_lease(msg.id, lease);
        let error = decision.error;
        let what = if error.is_some() { "failure" } else { "completion" };
        // Written as status cancelled: asked for (the handler was cancelled),
        // or decided by the server (any settlement of a message whose cancel
        // was requested is archived as cancelled).
        let outcome = if cancelled && outcome == Outcome::Ok { Outcome::Cancelled } else { outcome };
        match outcome {
            Outcome::Cancelled => {
                self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
                log::info!("pgqrs worker: message {} (queue {:?}) cancelled", msg.id, q.name);
                self.emit(JobEventKind::Cancelled, &msg, None, None);
            }
            Outcome::Ok => {
                self.stats.completed.fetch_add(1, Ordering::SeqCst);
                self.emit(JobEventKind::Completed, &msg, None, None);
            }
            Outcome::Retried { delay } => {
                log::warn!(
                    "pgqrs worker: message {} (queue {:?}) failed on attempt {}/{}, retrying in {delay:?}: {}",
                    msg.id,
                    q.name,
                    msg.attempts,
                    q.max_attempts,
                    error.as_deref().unwrap_or_default()
                );
                self.stats.retried.fetch_add(1, Ordering::SeqCst);
                self.emit(JobEventKind::Retried, &msg, error, delay);
            }
            Outcome::Dead => {
                log::warn!(
                    "pgqrs worker: message {} (queue {:?}) is dead after {} attempt(s): {}",
                    msg.id,
                    q.name,
                    msg.attempts,
                    error.as_deref().unwrap_or_default()
                );
                self.stats.dead.fetch_add(1, Ordering::SeqCst);
                self.emit(JobEventKind::Dead, &msg, error, None);
            }
            Outcome::LeaseLost => {
                self.stats.lease_lost.fetch_add(1, Ordering::SeqCst);
                self.emit(JobEventKind::LeaseLost, &msg, None, None);
                log::warn!(
                    "pgqrs worker: message {} (queue {:?}): lease lost before its {what} was written; \
                     another consumer has it now",
                    msg.id,
                    q.name
                );
            }
            Outcome::NotFound => log::warn!(
                "pgqrs worker: message {} (queue {:?}) was gone before its {what} was written",
                msg.id,
                q.name
            ),
            Outcome::Unwritten => {} // logged by the completer
        }
    }

    /// The handler's outcome (the lease keeper extends the lease meanwhile);
    /// a panic or a result that is not JSON is a failure.
    async fn run_handler(&self, msg: &Message) -> std::result::Result<Value, JobError> {
        let handled = (self.handler)(msg.clone());
        #[cfg(feature = "tracing")]
        let span = crate::telemetry::process_span(msg);
        #[cfg(feature = "tracing")]
        let handled = tracing::Instrument::instrument(handled, span.clone());
        let out = AssertUnwindSafe(handled).catch_unwind().await;
        #[cfg(feature = "tracing")]
        match &out {
            Ok(Err(e)) => crate::telemetry::record_failure(&span, e.kind),
            Err(_) => crate::telemetry::record_failure(&span, "panic"),
            Ok(Ok(_)) => {}
        }
        match out {
            Ok(Ok(r)) => serde_json::to_value(r).map_err(|e| {
                JobError::failed("pgqrs.PayloadError", format!("handler result is not JSON: {e}"))
            }),
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "handler panicked".to_string());
                Err(JobError::failed("panic", text))
            }
        }
    }
}
