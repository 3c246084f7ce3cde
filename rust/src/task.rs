//! Tasks: a kind of job declared once, by a name and a serde type, and run by
//! a worker that routes each message to the handler of its kind (as River's
//! `JobArgs`, and as Python's `@tasks.task`).
//!
//! ```no_run
//! use pgqrs::{Config, JobError, Message, Producer, Task, Worker, WorkerOptions};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail {
//!     to: String,
//!     subject: String,
//! }
//!
//! impl Task for SendEmail {
//!     const NAME: &'static str = "send_email";
//!     const QUEUE: &'static str = "emails";
//! }
//!
//! # async fn run() -> Result<(), pgqrs::Error> {
//! let config = Config::from_env()?;
//! let producer = Producer::new(&config, SendEmail::QUEUE).await?;
//! producer.enqueue_task(&SendEmail { to: "a@example.com".into(), subject: "hi".into() }).await?;
//!
//! let mut worker = Worker::new(&config, [SendEmail::QUEUE], WorkerOptions::default()).await?;
//! worker.task::<SendEmail, _>(|email: SendEmail, _msg: Message| async move {
//!     println!("to {}: {}", email.to, email.subject);
//!     Ok::<_, JobError>(())
//! });
//! worker.run_tasks().await?;
//! # Ok(()) }
//! ```
//!
//! # Wire format (the same in Python)
//!
//! A task's message is an ordinary message on the task's queue: its header
//! `"pgqrs-task"` holds the task's name, its payload is a JSON object of the
//! arguments by name (a serde struct's fields; Python's keyword arguments),
//! and the handler's return value is the archived `result`. So a task
//! declared in Python can be enqueued from Rust by its name and fields, and
//! the reverse. A worker with tasks routes each message by that header: a
//! message without it goes to the plain handler ([`Worker::run`](crate::Worker::run)),
//! one whose name has no handler, or whose payload does not decode into the
//! task's type, goes to the archive as `dead` at once (retrying cannot help).

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::producer::EnqueueOptions;
use crate::worker::JobError;

/// The header that names a message's task.
pub const TASK_HEADER: &str = "pgqrs-task";

/// Longest task name accepted, in characters.
pub const MAX_TASK_NAME_LENGTH: usize = 256;

/// A kind of job: its arguments are the fields of the implementing type.
///
/// The type must serialize to a JSON object (a struct with named fields; a
/// unit struct or a tuple struct is refused at enqueue).
pub trait Task: Serialize + DeserializeOwned + Send + 'static {
    /// The task's name, shared by every language that enqueues or runs it
    /// (the `pgqrs-task` header).
    const NAME: &'static str;
    /// The queue its messages go to (a worker serving it runs them).
    const QUEUE: &'static str;

    /// The options [`Producer::enqueue_task`](crate::Producer::enqueue_task)
    /// uses (delay, priority, dedup key, headers): none by default.
    /// [`Producer::enqueue_task_with`](crate::Producer::enqueue_task_with) takes the caller's instead.
    fn options(&self) -> EnqueueOptions {
        EnqueueOptions::default()
    }
}

/// A handler of task `T`: any `Fn(T, Message) -> impl Future<Output =
/// Result<R, JobError>>` with `R: Serialize` (the archived result).
pub trait TaskHandler<T>: Send + Sync + 'static {
    /// The handler's result, archived as the message's `result`.
    type Output: Serialize + Send + 'static;
    /// What the handler returns.
    type Future: Future<Output = std::result::Result<Self::Output, JobError>> + Send + 'static;
    /// Run the task with its decoded arguments and its message.
    fn call(&self, args: T, msg: Message) -> Self::Future;
}

impl<T, F, Fut, R> TaskHandler<T> for F
where
    F: Fn(T, Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, JobError>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    type Output = R;
    type Future = Fut;
    fn call(&self, args: T, msg: Message) -> Fut {
        self(args, msg)
    }
}

/// A task name is non-empty text without NUL, at most [`MAX_TASK_NAME_LENGTH`] characters.
pub(crate) fn validate_task_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('\0') || name.chars().count() > MAX_TASK_NAME_LENGTH {
        return Err(Error::invalid(format!(
            "task name must be non-empty text of at most {MAX_TASK_NAME_LENGTH} characters \
             without NUL, got {name:?}"
        )));
    }
    Ok(())
}

/// The payload and options of a task's message: its arguments as a JSON
/// object, and `options` with the `pgqrs-task` header added.
pub(crate) fn task_message<T: Task>(
    args: &T,
    options: &EnqueueOptions,
    queue: &str,
) -> Result<(Value, EnqueueOptions)> {
    validate_task_name(T::NAME)?;
    if queue != T::QUEUE {
        return Err(Error::invalid(format!(
            "task {:?} goes to queue {:?}, but this producer writes to {queue:?}; use a \
             Producer for {:?}",
            T::NAME,
            T::QUEUE,
            T::QUEUE
        )));
    }
    let payload = serde_json::to_value(args).map_err(|e| {
        Error::payload(format!("the arguments of task {:?} cannot be encoded as JSON: {e}", T::NAME))
    })?;
    if !payload.is_object() {
        return Err(Error::payload(format!(
            "the arguments of task {:?} must serialize to a JSON object (a struct with named \
             fields), got {payload}",
            T::NAME
        )));
    }
    let mut headers = match &options.headers {
        None => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(Error::payload(format!(
                "headers must be a JSON object with string keys, got {other}"
            )))
        }
    };
    match headers.get(TASK_HEADER) {
        Some(Value::String(name)) if name == T::NAME => {}
        Some(other) => {
            return Err(Error::invalid(format!(
                "headers already name task {other} in {TASK_HEADER:?}; enqueue_task sets it to {:?}",
                T::NAME
            )))
        }
        None => {
            headers.insert(TASK_HEADER.to_string(), Value::String(T::NAME.to_string()));
        }
    }
    let mut options = options.clone();
    options.headers = Some(Value::Object(headers));
    Ok((payload, options))
}

/// The task a message names: None without the header; an error (the message
/// is dead) when the header is not a string.
pub(crate) fn task_name(msg: &Message) -> std::result::Result<Option<&str>, JobError> {
    match msg.headers.get(TASK_HEADER) {
        None => Ok(None),
        Some(Value::String(name)) => Ok(Some(name)),
        Some(other) => Err(JobError::give_up(format!(
            "message {} has header {TASK_HEADER:?} = {other}, which is not a task name (a string)",
            msg.id
        ))),
    }
}

/// Decode a task's arguments; a payload that does not fit is dead at once.
pub(crate) fn decode_args<T: Task>(msg: &Message) -> std::result::Result<T, JobError> {
    T::deserialize(&msg.payload).map_err(|e| {
        JobError::bad_payload(format!(
            "the payload of message {} does not decode as the arguments of task {:?} ({}): {e}",
            msg.id,
            T::NAME,
            std::any::type_name::<T>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Add {
        a: i64,
        b: i64,
    }
    impl Task for Add {
        const NAME: &'static str = "add";
        const QUEUE: &'static str = "math";
    }

    #[derive(Serialize, Deserialize)]
    struct Tuple(i64, i64);
    impl Task for Tuple {
        const NAME: &'static str = "tuple";
        const QUEUE: &'static str = "math";
    }

    #[test]
    fn a_task_message_is_its_fields_and_the_header() {
        let (payload, options) = task_message(&Add { a: 1, b: 2 }, &EnqueueOptions::new(), "math").unwrap();
        assert_eq!(payload, json!({"a": 1, "b": 2}));
        assert_eq!(options.headers, Some(json!({"pgqrs-task": "add"})));
        let given = EnqueueOptions::new().headers(json!({"trace": "x"})).priority(3);
        let (_, options) = task_message(&Add { a: 1, b: 2 }, &given, "math").unwrap();
        assert_eq!(options.headers, Some(json!({"trace": "x", "pgqrs-task": "add"})));
        assert_eq!(options.priority, 3);
    }

    #[test]
    fn refuses_another_queue_a_non_object_and_a_conflicting_header() {
        let e = task_message(&Add { a: 1, b: 2 }, &EnqueueOptions::new(), "other").unwrap_err();
        assert!(e.to_string().contains("goes to queue \"math\""), "{e}");
        let e = task_message(&Tuple(1, 2), &EnqueueOptions::new(), "math").unwrap_err();
        assert!(e.to_string().contains("must serialize to a JSON object"), "{e}");
        let clash = EnqueueOptions::new().headers(json!({"pgqrs-task": "sub"}));
        let e = task_message(&Add { a: 1, b: 2 }, &clash, "math").unwrap_err();
        assert!(e.to_string().contains("already name task \"sub\""), "{e}");
        assert!(validate_task_name("").is_err());
        assert!(validate_task_name(&"x".repeat(MAX_TASK_NAME_LENGTH + 1)).is_err());
    }
}
