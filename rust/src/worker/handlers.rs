//! Calling the handler: one job from its start to its written outcome (the
//! handler run with its lease kept, its slot freed when it returns, the
//! decision handed to the completer with the job, the outcome counted and
//! emitted once written).

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
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
use crate::error::{Error, Result};
use crate::message::Message;
use crate::metrics::{outcome, WorkerMetrics};
use crate::task::{decode_args, task_name, validate_task_name, Task, TaskHandler, TASK_HEADER};

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
    /// OpenTelemetry instruments (feature `otel`).
    pub(super) metrics: WorkerMetrics,
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
        self.metrics.started(&msg);
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
        let error_type = match &outcome {
            Some(Err(e)) => e.kind,
            _ => "pgqrs.PayloadError",
        };
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
            self.metrics.failed(&msg.queue, error_type);
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
                self.metrics.settled(&msg.queue, outcome::CANCELLED, begun.elapsed());
                self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
                log::info!("pgqrs worker: message {} (queue {:?}) cancelled", msg.id, q.name);
                self.emit(JobEventKind::Cancelled, &msg, None, None);
            }
            Outcome::Ok => {
                self.metrics.settled(&msg.queue, outcome::COMPLETED, begun.elapsed());
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
                self.metrics.settled(&msg.queue, outcome::RETRIED, begun.elapsed());
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
                self.metrics.settled(&msg.queue, outcome::DEAD, begun.elapsed());
                self.stats.dead.fetch_add(1, Ordering::SeqCst);
                self.emit(JobEventKind::Dead, &msg, error, None);
            }
            Outcome::LeaseLost => {
                self.metrics.settled(&msg.queue, outcome::LEASE_LOST, begun.elapsed());
                self.stats.lease_lost.fetch_add(1, Ordering::SeqCst);
                self.emit(JobEventKind::LeaseLost, &msg, None, None);
                log::warn!(
                    "pgqrs worker: message {} (queue {:?}): lease lost before its {what} was written; \
                     another consumer has it now",
                    msg.id,
                    q.name
                );
            }
            Outcome::NotFound => {
                // As Python counts it: the outcome was not written, the lease is gone.
                self.metrics.settled(&msg.queue, outcome::LEASE_LOST, begun.elapsed());
                log::warn!(
                    "pgqrs worker: message {} (queue {:?}) was gone before its {what} was written",
                    msg.id,
                    q.name
                )
            }
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

/// A handler with its types erased: a message in, its JSON result out.
type Erased = Arc<dyn Fn(Message) -> BoxFuture<'static, std::result::Result<Value, JobError>> + Send + Sync>;

/// The worker's tasks by name ([`Worker::task`](super::Worker::task)): the
/// routing of messages by their `pgqrs-task` header (see [`crate::task`]).
#[derive(Clone, Default)]
pub(super) struct TaskRegistry {
    tasks: BTreeMap<&'static str, (&'static str, Erased)>,
    /// Names registered twice (an error at run).
    twice: Vec<&'static str>,
}

impl TaskRegistry {
    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Register `handler` for task `T`.
    pub(super) fn add<T: Task, H: TaskHandler<T>>(&mut self, handler: H) {
        let handler = Arc::new(handler);
        let erased: Erased = Arc::new(move |msg: Message| {
            let handler = handler.clone();
            async move {
                let args = decode_args::<T>(&msg)?;
                let out = handler.call(args, msg).await?;
                serde_json::to_value(out).map_err(|e| {
                    JobError::failed("pgqrs.PayloadError", format!("handler result is not JSON: {e}"))
                })
            }
            .boxed()
        });
        if self.tasks.insert(T::NAME, (T::QUEUE, erased)).is_some() {
            self.twice.push(T::NAME);
        }
    }

    /// Every task valid and served by this worker.
    pub(super) fn check(&self, queues: &[String]) -> Result<()> {
        if let Some(name) = self.twice.first() {
            return Err(Error::invalid(format!("task {name:?} is registered twice on this worker")));
        }
        for (name, (queue, _)) in &self.tasks {
            validate_task_name(name)?;
            if !queues.iter().any(|q| q == queue) {
                return Err(Error::invalid(format!(
                    "task {name:?} runs on queue {queue:?}, which this worker does not serve \
                     ({queues:?}); add it to the queues of Worker::new"
                )));
            }
        }
        Ok(())
    }

    /// One handler for the runtime: a message naming a task goes to that
    /// task's handler, one without the header to `plain` (none: dead).
    pub(super) fn router<F, Fut, R>(
        self,
        plain: Option<F>,
    ) -> impl Fn(Message) -> BoxFuture<'static, std::result::Result<Value, JobError>> + Send + Sync + 'static
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
        R: Serialize + Send + 'static,
    {
        let plain = plain.map(Arc::new);
        let known = self.tasks.keys().copied().collect::<Vec<_>>().join(", ");
        move |msg: Message| {
            let name = match task_name(&msg) {
                Ok(name) => name,
                Err(e) => return futures_util::future::ready(Err(e)).boxed(),
            };
            match name {
                Some(name) => match self.tasks.get(name) {
                    Some((_, handler)) => handler(msg),
                    None => {
                        let e = JobError::unknown_task(format!(
                            "message {} names task {name:?}, which has no handler on this worker \
                             (queue {:?}; tasks: {known}); register it with Worker::task",
                            msg.id, msg.queue
                        ));
                        futures_util::future::ready(Err(e)).boxed()
                    }
                },
                None => match &plain {
                    Some(plain) => {
                        let fut = plain(msg);
                        async move {
                            let out = fut.await?;
                            serde_json::to_value(out).map_err(|e| {
                                JobError::failed(
                                    "pgqrs.PayloadError",
                                    format!("handler result is not JSON: {e}"),
                                )
                            })
                        }
                        .boxed()
                    }
                    None => {
                        let e = JobError::unknown_task(format!(
                            "message {} (queue {:?}) has no {TASK_HEADER:?} header and this worker \
                             runs only tasks ({known}); run it with Worker::run and a plain handler",
                            msg.id, msg.queue
                        ));
                        futures_util::future::ready(Err(e)).boxed()
                    }
                },
            }
        }
    }
}
