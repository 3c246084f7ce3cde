//! Typed calls of the server functions that make the worker's decisions in
//! SQL, once for both languages (as Python's `pgqrs._async._calls`):
//! `message_fail` (retry with the backoff, or dead) and `worker_alive` (a
//! heartbeat that registers a pruned worker again under its id).

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::admin::{bounded_secs, MAX_BATCH};
use crate::db::{col, Db, Param};
use crate::error::{Error, Result};
use crate::queries::Query;

/// One failed attempt to settle with [`Db::message_fail`].
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The message's id.
    pub id: i64,
    /// The lease it was dequeued under (fencing: another lease changes nothing).
    pub lease: Uuid,
    /// JSON text: the message's last_error on a retry, the archive row's
    /// error when dead (None keeps the last_error).
    pub error: Option<String>,
    /// Wait before the retry; None: the backoff.
    pub delay: Option<Duration>,
    /// Archive as dead whatever the attempts (the handler gave up).
    pub dead: bool,
}

/// The retry delay after failed attempt n: `base * 2^(n-1)`, capped at
/// `max`, spread by +-`jitter` (a fraction from 0 to 1), computed in SQL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub jitter: f64,
}

/// What `message_fail` did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// Released; visible again after [`FailOutcome::delay`].
    Retried,
    /// Moved to the archive as dead (max_attempts reached, or forced).
    Dead,
    /// The message is there under another lease: left untouched.
    LeaseLost,
    /// No such waiting or in-flight message.
    NotFound,
}

/// One row of `message_fail`'s result.
#[derive(Debug, Clone, PartialEq)]
pub struct FailOutcome {
    pub id: i64,
    pub outcome: FailKind,
    /// The delay used, for [`FailKind::Retried`].
    pub delay: Option<Duration>,
    /// Deliveries so far, for [`FailKind::Retried`] and [`FailKind::Dead`].
    pub attempts: Option<i32>,
}

/// What `worker_alive` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The worker row's status now ('running' or 'stopping').
    pub status: String,
    /// The row had been pruned and was registered again under the same id.
    pub registered: bool,
}

impl Backoff {
    fn checked(&self) -> Result<(f64, f64, f64)> {
        let base = bounded_secs(self.base, "backoff base")?;
        let max = bounded_secs(self.max, "backoff max")?;
        if max < base {
            return Err(Error::invalid(format!("backoff max ({max}s) must be >= backoff base ({base}s)")));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::invalid(format!(
                "backoff jitter is a fraction from 0 to 1, got {}",
                self.jitter
            )));
        }
        Ok((base, max, self.jitter))
    }
}

impl Db {
    /// `message_fail`: for each failure whose lease still holds, release the
    /// message for a retry after its delay (or the backoff), or archive it as
    /// dead when it was delivered the queue's max_attempts times (or `dead`).
    /// One outcome per failure, in order.
    pub async fn message_fail(
        &self,
        failures: &[Failure],
        backoff: Backoff,
        queue: Option<&str>,
    ) -> Result<Vec<FailOutcome>> {
        if failures.is_empty() {
            return Err(Error::invalid("nothing to fail: the failure list is empty"));
        }
        if failures.len() > MAX_BATCH {
            return Err(Error::invalid(format!(
                "message_fail takes at most {MAX_BATCH} messages, got {}",
                failures.len()
            )));
        }
        let (base, max, jitter) = backoff.checked()?;
        let ids: Vec<i64> = failures.iter().map(|f| f.id).collect();
        if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
            return Err(Error::invalid("the same message appears twice in one message_fail call"));
        }
        let leases: Vec<Uuid> = failures.iter().map(|f| f.lease).collect();
        let errors: Vec<Option<String>> = failures.iter().map(|f| f.error.clone()).collect();
        let delays: Vec<Option<f64>> = failures
            .iter()
            .map(|f| f.delay.map(|d| bounded_secs(d, "delay")).transpose())
            .collect::<Result<_>>()?;
        let dead: Vec<bool> = failures.iter().map(|f| f.dead).collect();
        let params: [Param<'_>; 8] = [
            (&ids, Type::INT8_ARRAY),
            (&leases, Type::UUID_ARRAY),
            (&errors, Type::TEXT_ARRAY),
            (&delays, Type::FLOAT8_ARRAY),
            (&dead, Type::BOOL_ARRAY),
            (&base, Type::FLOAT8),
            (&max, Type::FLOAT8),
            (&jitter, Type::FLOAT8),
        ];
        let rows = self.fetch(Query::MessageFail, &params, queue).await?;
        rows.iter()
            .map(|r| {
                let outcome: String = col(r, "outcome")?;
                let outcome = match outcome.as_str() {
                    "retried" => FailKind::Retried,
                    "dead" => FailKind::Dead,
                    "lease_lost" => FailKind::LeaseLost,
                    "not_found" => FailKind::NotFound,
                    other => {
                        return Err(Error::new(
                            crate::ErrorKind::Database,
                            format!("message_fail: outcome {other:?}"),
                        ))
                    }
                };
                let delay: Option<f64> = col(r, "delay")?;
                Ok(FailOutcome {
                    id: col(r, "id")?,
                    outcome,
                    delay: delay.map(Duration::from_secs_f64),
                    attempts: col(r, "attempts")?,
                })
            })
            .collect()
    }

    /// `worker_alive`: the heartbeat of worker `id` with `status` ('running'
    /// or 'stopping'); a pruned row is registered again under the same id
    /// from `hostname`, `pid`, `queues` and `listening`.
    pub async fn worker_alive(
        &self,
        id: i64,
        status: &str,
        hostname: &str,
        pid: i32,
        queues: &[String],
        listening: bool,
    ) -> Result<Heartbeat> {
        if status != "running" && status != "stopping" {
            return Err(Error::invalid(format!(
                "worker status must be 'running' or 'stopping', got {status:?}"
            )));
        }
        let (status, hostname, queues) = (status.to_string(), hostname.to_string(), queues.to_vec());
        let params: [Param<'_>; 6] = [
            (&id, Type::INT8),
            (&status, Type::TEXT),
            (&hostname, Type::TEXT),
            (&pid, Type::INT4),
            (&queues, Type::TEXT_ARRAY),
            (&listening, Type::BOOL),
        ];
        let rows = self.fetch(Query::WorkerAlive, &params, None).await?;
        Ok(Heartbeat { status: col(&rows[0], "status")?, registered: col(&rows[0], "registered")? })
    }
}
