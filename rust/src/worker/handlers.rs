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
use super::outcome::{decide, JobError};
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
        let outcome = self.run_handler(&msg).await;
        q.ahead.finished(begun.elapsed());
        let max_payload = self.db.config.max_payload_bytes();
        let decision =
            decide(outcome, msg.attempts, q.worker_max_attempts, self.backoff, max_payload, self.worker_id);
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
        match outcome {
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
            // The handler succeeded: a result that cannot be stored never
            // makes it run again (its side effects happened); it is archived
            // as completed with a record saying so, and one warning.
            Ok(Ok(r)) => {
                let max_payload = self.db.config.max_payload_bytes();
                let refused = match serde_json::to_value(&r) {
                    Ok(value) => match crate::payload::encode(&value, "result", max_payload) {
                        Ok(_) => return Ok(value),
                        Err(e) => e.to_string(),
                    },
                    Err(e) => format!("result cannot be encoded as JSON: {e}"),
                };
                let kind = std::any::type_name::<R>();
                log::warn!(
                    "pgqrs worker: message {} (queue {:?}): the handler returned a result that cannot be \
                     stored ({kind}: {refused}); archived as completed with {{\"unstorable\": ...}} instead",
                    msg.id,
                    msg.queue
                );
                Ok(super::outcome::unstorable_result(kind, &refused))
            }
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
