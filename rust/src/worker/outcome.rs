//! The outcome decision: what a handler's outcome means for its message
//! (as Python's `outcome.py`).
//!
//! Pure: no I/O, no clock, nothing else of the worker used but its option
//! types. [`decide`] turns a handler's result into a [`Decision`]: archive as
//! completed, or fail (with a delay asked for, or forced dead); whether a
//! failure is retried (after the backoff, computed in SQL) or dead by its
//! attempts is `message_fail`'s decision, the same for the Python worker.
//! The handler module writes it (through the completer) and counts and emits
//! its event once written, from what `message_fail` did.

use std::time::Duration;

use serde_json::{json, Value};

use super::options::Backoff;
use crate::payload::encode;

/// The error "type" recorded for an explicit retry (Python's `pgqrs.Retry`).
pub(super) const RETRY_KIND: &str = "pgqrs.Retry";

/// Why a handler failed, and what to do about it. Any `std::error::Error`
/// converts into a retryable JobError, so handlers can use `?`.
#[derive(Debug)]
pub struct JobError {
    pub(super) message: String,
    pub(super) retry: Retry,
    /// Recorded as the error's "type".
    pub(super) kind: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Retry {
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
    /// A failure of `kind` to be retried with the backoff.
    pub(super) fn failed(kind: &'static str, message: impl std::fmt::Display) -> JobError {
        JobError { message: message.to_string(), retry: Retry::Backoff, kind }
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

/// What to write for one message.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Move to the archive with `status`, `result` and `error` (JSON texts).
    Archive { status: &'static str, result: Option<String>, error: Option<String> },
    /// Back to the queue after `delay`; `refund` gives back the attempt
    /// counted at dequeue (for a message no handler started).
    Release { delay: Duration, error: Option<String>, refund: bool },
    /// A failed attempt, for `message_fail`: retried after `delay` (None:
    /// the `backoff`, computed in SQL) or archived as dead when the queue's
    /// max_attempts are used up (or at once with `dead`), `error` recorded.
    Fail { error: Option<String>, delay: Option<Duration>, dead: bool, backoff: Backoff },
}

impl Action {
    /// Back to the queue at once, attempt refunded: no handler started.
    pub(crate) fn give_back() -> Action {
        Action::Release { delay: Duration::ZERO, error: None, refund: true }
    }
}

/// The decision for one handler outcome.
#[derive(Debug)]
pub(super) struct Decision {
    /// What to write.
    pub(super) action: Action,
    /// The handler's error, for the Retried or Dead event once written.
    pub(super) error: Option<String>,
    /// The handler failed (a `Failed` event now): not for an explicit retry,
    /// which is no failure (as in Python).
    pub(super) failed: Option<String>,
}

/// What the message of a job is to become: archived as completed, or a
/// failed attempt for `message_fail`, which decides in SQL between a retry
/// and dead from the attempts (so the decision is the same in Python).
///
/// `attempt`: its delivery count; `worker_max_attempts`: the worker's own
/// limit, when lower than the queue's (which SQL knows): reaching it forces
/// dead; `backoff`: the worker's, passed to SQL; `max_payload`: the largest
/// JSON text the database is sent; `worker_id`: recorded with the error.
pub(super) fn decide(
    outcome: std::result::Result<Value, JobError>,
    attempt: i32,
    worker_max_attempts: Option<i32>,
    backoff: Backoff,
    max_payload: usize,
    worker_id: i64,
) -> Decision {
    let failed = match outcome {
        Ok(Value::Null) => {
            let action = Action::Archive { status: "completed", result: None, error: None };
            return Decision { action, error: None, failed: None };
        }
        Ok(value) => {
            // A handler's success is never re-run because of its result
            // (the worker checked and replaced it already; this is the net).
            let result = encode(&value, "result", max_payload).ok().or_else(|| {
                let kind = match &value {
                    Value::Object(_) => "object",
                    Value::Array(_) => "array",
                    Value::String(_) => "string",
                    _ => "value",
                };
                encode(&unstorable_result(kind, "too large or not storable"), "result", max_payload).ok()
            });
            let action = Action::Archive { status: "completed", result, error: None };
            return Decision { action, error: None, failed: None };
        }
        Err(e) => e,
    };
    let error = error_json(&failed, attempt, worker_id, max_payload);
    let failed_event = (failed.kind != RETRY_KIND).then(|| failed.message.clone());
    let dead = failed.retry == Retry::GiveUp || worker_max_attempts.is_some_and(|m| attempt >= m);
    let delay = match failed.retry {
        Retry::After(d) => Some(d),
        _ => None,
    };
    Decision {
        action: Action::Fail { error, delay, dead, backoff },
        error: Some(failed.message),
        failed: failed_event,
    }
}

/// What is archived as the `result` of a handler that returned a value that
/// cannot be stored (docs/worker.md): its type and why, as in Python.
pub(super) fn unstorable_result(kind: &str, reason: &str) -> Value {
    json!({"unstorable": kind, "reason": storable_text(reason, MAX_ERROR_MESSAGE).0})
}

/// Longest error message stored, in characters (as in Python's worker):
/// longer ones are cut, with a note saying how much.
pub(crate) const MAX_ERROR_MESSAGE: usize = 4_000;

/// `text` as PostgreSQL can store it in jsonb: NUL replaced by U+FFFD (Rust
/// strings hold no lone surrogate), cut to `limit` characters with a note;
/// true when it was changed.
pub(crate) fn storable_text(text: &str, limit: usize) -> (String, bool) {
    let mut changed = false;
    let mut out = if text.contains('\0') {
        changed = true;
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_string()
    };
    let count = out.chars().count();
    if count > limit {
        changed = true;
        let cut: String = out.chars().take(limit).collect();
        out = format!("{cut}... [{} characters cut]", count - limit);
    }
    (out, changed)
}

/// The message's error record: the same fields as the Python worker's (Rust
/// has no traceback to add). Always storable: the message is cleaned and cut
/// (with a log line); if even that is refused (a tiny max_payload_bytes),
/// the message is left out.
fn error_json(e: &JobError, attempt: i32, worker_id: i64, max_payload: usize) -> Option<String> {
    let (message, changed) = storable_text(&e.message, MAX_ERROR_MESSAGE);
    if changed {
        log::warn!(
            "pgqrs worker: a handler's error message was cleaned (NUL) or cut to {MAX_ERROR_MESSAGE} \
             characters to be stored"
        );
    }
    let record = json!({
        "type": e.kind,
        "message": message,
        "attempt": attempt,
        "worker_id": worker_id,
    });
    encode(&record, "error", max_payload).ok().or_else(|| {
        let short = json!({"type": e.kind, "message": "(too large to store)", "attempt": attempt, "worker_id": worker_id});
        encode(&short, "error", max_payload).ok()
    })
}

/// The error record of a job cut off by the worker's stop.
pub(super) fn stopped_error(worker_id: i64, max_payload: usize) -> Option<String> {
    let record = json!({
        "type": "WorkerStopped",
        "message": "the worker stopped before the handler finished",
        "worker_id": worker_id,
    });
    encode(&record, "error", max_payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;
    const B: Backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(9), jitter: 0.0 };

    fn fail(d: &Decision) -> (Option<Duration>, bool) {
        match &d.action {
            Action::Fail { delay, dead, backoff, .. } => {
                assert_eq!(*backoff, B, "the worker's backoff goes to SQL");
                (*delay, *dead)
            }
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn an_unstorable_result_is_completed_with_a_record_not_retried() {
        let d = decide(Ok(json!({"big": "x".repeat(100)})), 1, None, B, 80, 1);
        match d.action {
            Action::Archive { status: "completed", result: Some(r), .. } => {
                assert!(r.contains("\"unstorable\":\"object\""), "{r}")
            }
            other => panic!("not completed: {other:?}"),
        }
    }

    #[test]
    fn an_error_record_is_always_storable() {
        let e = JobError::failed("boom", format!("a\0b{}", "x".repeat(10_000)));
        let text = error_json(&e, 1, 1, MAX).unwrap();
        assert!(!text.contains("\\u0000") && text.contains("characters cut]"), "{text}");
        assert!(text.len() < MAX_ERROR_MESSAGE + 200);
    }

    #[test]
    fn a_value_is_archived_as_completed() {
        let d = decide(Ok(Value::Null), 1, None, B, MAX, 1);
        assert!(matches!(d.action, Action::Archive { status: "completed", result: None, .. }));
        let d = decide(Ok(json!({"n": 1})), 1, None, B, MAX, 1);
        assert!(matches!(d.action, Action::Archive { status: "completed", result: Some(_), .. }));
        assert!(d.error.is_none() && d.failed.is_none());
    }

    #[test]
    fn a_failure_is_left_to_sql_unless_the_worker_limit_is_reached() {
        // Retry or dead by the queue's max_attempts: message_fail decides.
        let d = decide(Err(JobError::failed("E", "boom")), 5, None, B, MAX, 1);
        assert_eq!(fail(&d), (None, false));
        assert_eq!((d.failed.as_deref(), d.error.as_deref()), (Some("boom"), Some("boom")));
        assert!(matches!(&d.action, Action::Fail { error: Some(e), .. } if e.contains("\"attempt\":5")));
        // The worker's own, lower limit forces dead.
        let d = decide(Err(JobError::failed("E", "boom")), 1, Some(2), B, MAX, 1);
        assert_eq!(fail(&d), (None, false));
        let d = decide(Err(JobError::failed("E", "boom")), 2, Some(2), B, MAX, 1);
        assert_eq!(fail(&d), (None, true));
    }

    #[test]
    fn an_explicit_retry_is_no_failure_and_give_up_is_dead_at_once() {
        let d = decide(Err(JobError::retry_after("later", Duration::from_secs(3))), 1, None, B, MAX, 1);
        assert_eq!(fail(&d), (Some(Duration::from_secs(3)), false));
        assert!(d.failed.is_none(), "asking for a retry is not a failure");
        let d = decide(Err(JobError::retry("later")), 1, None, B, MAX, 1);
        assert_eq!(fail(&d), (None, false));
        let d = decide(Err(JobError::give_up("no")), 1, None, B, MAX, 1);
        assert_eq!(fail(&d), (None, true));
        assert_eq!(d.failed.as_deref(), Some("no"));
    }

    #[test]
    fn a_result_too_large_is_still_a_completion() {
        // The handler ran: never again because of its result (issue 15, fault 10).
        let big = Value::String("x".repeat(100));
        let d = decide(Ok(big), 1, None, B, 10, 1);
        // Even the record saying so is too large here: completed without a result.
        assert!(matches!(&d.action, Action::Archive { status: "completed", result: None, .. }));
        assert!(d.error.is_none() && d.failed.is_none());
    }
}
