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

/// The boxed error every conversion into [`JobError`] goes through.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a handler failed, and what to do about it.
///
/// Handlers can use `?` on almost anything: every `E: Into<BoxError>`
/// converts into a JobError retried with the worker's backoff. That covers
/// any `std::error::Error + Send + Sync + 'static`, a `Box<dyn Error + Send +
/// Sync>`, `anyhow::Error` (anyhow converts itself into that box: no feature
/// needed), a `String` or a `&str`. One exception, so that bad data is not
/// retried for nothing: a [`pgqrs::Error`](crate::Error) of kind
/// [`Payload`](crate::ErrorKind::Payload) (from [`Message::payload_as`](crate::Message::payload_as))
/// gives up at once (the message goes to the archive as `dead`).
///
/// ```
/// use pgqrs::JobError;
/// fn parse(text: &str) -> Result<i64, JobError> {
///     Ok(text.parse::<i64>()?) // ParseIntError: retried
/// }
/// fn with_anyhow() -> Result<(), JobError> {
///     let r: anyhow::Result<()> = Err(anyhow::anyhow!("no route to host"));
///     r?; // anyhow::Error: retried
///     Ok(())
/// }
/// assert!(parse("x").is_err());
/// assert!(with_anyhow().is_err());
/// // Explicit choices:
/// let _ = JobError::retry("the API said 503");
/// let _ = JobError::give_up("no such customer");
/// let _ = JobError::from("transient").into_give_up();
/// ```
#[derive(Debug)]
pub struct JobError {
    pub(super) message: String,
    pub(super) retry: Retry,
    /// Recorded as the error's "type".
    pub(super) kind: &'static str,
    source: Option<BoxError>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Retry {
    Backoff,
    After(Duration),
    GiveUp,
}

/// The error "type" recorded for a payload that does not decode (as Python's).
pub(super) const PAYLOAD_KIND: &str = "pgqrs.PayloadError";

impl JobError {
    fn new(message: impl std::fmt::Display, retry: Retry, kind: &'static str) -> JobError {
        JobError { message: message.to_string(), retry, kind, source: None }
    }
    /// Retry later, with the worker's backoff.
    pub fn retry(message: impl std::fmt::Display) -> JobError {
        JobError::new(message, Retry::Backoff, RETRY_KIND)
    }
    /// Retry after exactly `delay` (still dead after max_attempts).
    pub fn retry_after(message: impl std::fmt::Display, delay: Duration) -> JobError {
        JobError::new(message, Retry::After(delay), RETRY_KIND)
    }
    /// Do not retry: archive the message as `dead` now.
    pub fn give_up(message: impl std::fmt::Display) -> JobError {
        JobError::new(message, Retry::GiveUp, "pgqrs.Abort")
    }
    /// This error, not retried: the message goes to the archive as `dead`
    /// now (`Err(JobError::from(e).into_give_up())`). Its type is kept.
    pub fn into_give_up(mut self) -> JobError {
        self.retry = Retry::GiveUp;
        self
    }
    /// The error text recorded on the message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// True when the message is archived as dead without another attempt.
    pub fn is_give_up(&self) -> bool {
        self.retry == Retry::GiveUp
    }
    /// The error this one was converted from, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
    /// A failure of `kind` to be retried with the backoff.
    pub(super) fn failed(kind: &'static str, message: impl std::fmt::Display) -> JobError {
        JobError::new(message, Retry::Backoff, kind)
    }
    /// A task no handler knows: another attempt would find none either.
    pub(super) fn unknown_task(message: impl std::fmt::Display) -> JobError {
        JobError::new(message, Retry::GiveUp, "pgqrs.UnknownTask")
    }
    /// A payload that does not decode: the same payload would fail again.
    pub(crate) fn bad_payload(message: impl std::fmt::Display) -> JobError {
        JobError::new(message, Retry::GiveUp, PAYLOAD_KIND)
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Any error (or error text) is a failure retried with the backoff, except
/// a pgqrs Payload error, which gives up (see [`JobError`]). The recorded
/// type is the Rust type's name (`E`), or the pgqrs error's Python class.
impl<E: Into<BoxError>> From<E> for JobError {
    fn from(e: E) -> Self {
        let mut kind = std::any::type_name::<E>();
        let source: BoxError = e.into();
        let mut retry = Retry::Backoff;
        if let Some(pgqrs) = source.downcast_ref::<crate::Error>() {
            kind = pgqrs_kind(pgqrs.kind());
            if pgqrs.kind() == crate::ErrorKind::Payload {
                retry = Retry::GiveUp;
            }
        }
        JobError { message: source.to_string(), retry, kind, source: Some(source) }
    }
}

/// `pgqrs.<Python class>` for a pgqrs error kind (as the Python worker records it).
fn pgqrs_kind(kind: crate::ErrorKind) -> &'static str {
    use crate::ErrorKind as K;
    match kind {
        K::Config => "pgqrs.ConfigError",
        K::InvalidArgument => "pgqrs.InvalidArgument",
        K::Connection => "pgqrs.ConnectionFailed",
        K::SchemaNotInstalled => "pgqrs.SchemaNotInstalled",
        K::InvalidQueueName => "pgqrs.InvalidQueueName",
        K::QueueNotFound => "pgqrs.QueueNotFound",
        K::QueueExists => "pgqrs.QueueExists",
        K::Payload => PAYLOAD_KIND,
        K::LeaseExpired => "pgqrs.LeaseExpired",
        K::LeaseNotHeld => "pgqrs.LeaseNotHeld",
        _ => "pgqrs.DatabaseError",
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
    fn conversions_retry_except_a_payload_error() {
        #[derive(Debug)]
        struct Mine;
        impl std::fmt::Display for Mine {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("mine")
            }
        }
        impl std::error::Error for Mine {}
        let e = JobError::from(Mine);
        assert_eq!((e.message(), e.is_give_up()), ("mine", false));
        assert!(e.kind.ends_with("Mine"), "{}", e.kind);
        assert!(e.source().unwrap().downcast_ref::<Mine>().is_some());
        let boxed: BoxError = "boxed".into();
        assert_eq!(JobError::from(boxed).message(), "boxed");
        assert_eq!(JobError::from(String::from("text")).message(), "text");
        let payload = JobError::from(crate::Error::payload("does not decode"));
        assert!(payload.is_give_up());
        assert_eq!(payload.kind, PAYLOAD_KIND);
        let other = JobError::from(crate::Error::invalid("x"));
        assert!(!other.is_give_up());
        assert_eq!(other.kind, "pgqrs.InvalidArgument");
        assert!(JobError::retry("x").into_give_up().is_give_up());
        let d = decide(Err(payload), 1, None, B, MAX, 1);
        assert_eq!(fail(&d), (None, true), "a payload that does not decode is dead at once");
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
