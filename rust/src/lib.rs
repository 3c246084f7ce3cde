//! pgqrs: a library-only job queue on PostgreSQL, for Rust and Python on the
//! same database.
//!
//! ```no_run
//! use pgqrs::{Admin, Config, Consumer, Producer};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), pgqrs::Error> {
//! let config = Config::from_dsn("postgresql://user:pass@localhost/mydb")?;
//! let admin = Admin::new(&config).await?;
//! admin.install().await?;
//! admin.create_queue("tasks").await?;
//!
//! let producer = Producer::new(&config, "tasks").await?;
//! let message = producer.enqueue(&json!({"task": "send_email"})).await?;
//!
//! let consumer = Consumer::new(&config, "tasks").await?;
//! if let Some(msg) = consumer.dequeue().await? {
//!     assert_eq!(msg.id, message.id);
//!     consumer.archive(msg.id, "completed").await?;
//! }
//! # Ok(()) }
//! ```
//!
//! # One schema, two languages
//!
//! The crate embeds the very files of the repository's `sql/` folder
//! (`include_str!`, no copies; `rust/sql` is a symlink to it, which
//! `cargo package` follows): the migrations, the server functions, the
//! bootstrap and uninstall scripts, every named query and the SQLSTATE table.
//! `Admin::install` takes the same advisory lock and writes the same ledgers
//! (migrations by version, functions by name, each with the sha256 of its
//! file) as the Python package, so either client installs for both, and
//! Rust and Python producers and consumers share queues, leases and dedup keys.
//!
//! # Driver: tokio-postgres, deadpool-postgres, unnamed typed statements
//!
//! Each operation is one SQL statement sent with
//! [`tokio_postgres::Client::query_typed`]: the parameter types travel with
//! the statement in an *unnamed* prepared statement, so a call costs one
//! round trip (Parse/Bind/Execute/Sync pipelined, no Describe first) and
//! leaves no state on the server connection. That is what keeps pgqrs safe
//! behind pgBouncer or pgcat in transaction mode, where a named prepared
//! statement made on one server connection is missing on the next.
//! Direct connections may opt in to named statements cached per connection
//! with [`Config::with_prepare_statements`]. Nothing else uses session
//! state: no `SET`, no temp tables; the install lock is transaction-level.
//! The statements that run most (dequeue, enqueue, archive, delete, extend,
//! release) are PL/pgSQL functions of the schema (`sql/functions/`),
//! so each server connection caches their plans itself, pooler or not.
//!
//! tokio-postgres was chosen over sqlx for a smaller build, explicit
//! control over statement naming and the binary protocol, and LISTEN support
//! on a plain connection; deadpool-postgres is a thin pool over it.
//!
//! # TLS
//!
//! With the default feature `tls`, connections use rustls (with the `ring`
//! provider: no OpenSSL, no C toolchain beyond what `ring` needs) through
//! tokio-postgres-rustls, and follow the DSN's `sslmode` and `sslrootcert`
//! as libpq does: `disable`, `allow`/`prefer` (the default: TLS when the
//! server offers it, certificate not checked), `require`, `verify-ca` and
//! `verify-full`; `sslrootcert` names a PEM file of CA certificates or
//! `system`, and `sslcert`/`sslkey` a client certificate and its key. See
//! [`SslMode`] for the details. A certificate that does not
//! verify is an [`ErrorKind::Connection`] error naming the host and the mode.
//! Without the feature, only plain-text connections are made and a DSN that
//! requires TLS is a [`ErrorKind::Config`] error.
//!
//! # Payloads
//!
//! Payloads are `serde_json::Value` (any `Serialize` value on enqueue;
//! [`Message::payload_as`] decodes into your type). The crate turns on
//! serde_json's `arbitrary_precision`, so integers and decimals of any size
//! round-trip exactly, as they do in Python (cargo unifies features, so the
//! application's serde_json gets it too: numbers keep their decimal text).
//! NUL characters (`\u0000`), which jsonb cannot store, and payloads over
//! [`Config::max_payload_bytes`] are refused before any round trip. A `&str`
//! payload is a JSON string (Python takes a `str` as JSON text), and
//! non-finite floats serialize as `null` (serde_json's rule; Python refuses them).
//!
//! # Errors
//!
//! Every call returns [`Error`]; [`Error::kind`] gives the [`ErrorKind`],
//! one per Python exception class (QueueNotFound, QueueExists,
//! SchemaNotInstalled, InvalidQueueName, Payload, LeaseExpired, ...).
//!
//! # Worker
//!
//! [`Worker`] runs a handler over one or several queues with bounded
//! concurrency (a handler's slot is free again as soon as it returns; its
//! outcome waits in a bounded completion backlog to be written), retries with
//! exponential backoff and jitter (computed in SQL by `message_fail`, as for
//! the Python worker), lease extension, batched completions (one fenced
//! `message_archive` / `message_release` / `message_fail` statement for the
//! jobs finishing within a few milliseconds, retried on connection loss), NOTIFY wake-ups plus polling,
//! periodic `worker_reap`, and graceful shutdown on SIGINT/SIGTERM (messages
//! fetched but not started go back with their attempt refunded). Its
//! behaviour follows the Python worker; see the [`worker`] module.
//!
//! # Tasks
//!
//! A [`Task`] is a kind of job declared once, by a serde type, a name and a
//! queue: [`Producer::enqueue_task`] sends it, [`Worker::task`] routes the
//! messages naming it to a typed handler. The wire format (header
//! `pgqrs-task`, payload = the arguments by name) is Python's too; see the
//! [`task`] module.
//!
//! # Cargo features
//!
//! `tls` (default): TLS connections. `sqlx`: enqueue on an sqlx connection
//! or transaction ([`Producer::enqueue_sqlx`](Producer)). `tracing`: spans
//! for enqueues and handler calls. `otel`: the W3C trace context in message
//! headers, and the worker's OpenTelemetry metrics (docs/telemetry.md).

mod admin;
mod calls;
mod config;
mod consumer;
mod db;
mod error;
mod flow;
mod message;
mod metrics;
mod payload;
mod producer;
mod queries;
mod schedule;
pub mod task;
#[cfg(feature = "tracing")]
mod telemetry;
mod tls;
mod validate;
mod wait;
pub mod worker;

pub use admin::{
    Admin, CancelOutcome, Grants, QueueOptions, DEFAULT_WORKER_DEAD_AFTER, DEFAULT_WORKER_PRUNE_AFTER,
    MAX_BATCH, MAX_ROLE_NAME_BYTES, MAX_SECONDS,
};
pub use config::{
    Config, DEFAULT_APPLICATION_NAME, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_POOL_MAX_SIZE, DEFAULT_POOL_MIN_SIZE, DEFAULT_PREPARE_STATEMENTS,
    DEFAULT_SCHEMA, DEFAULT_VISIBILITY_TIMEOUT, ENV_VARS, FALLBACK_DSN_ENV_VAR,
};
pub use consumer::{Consumer, MessageRef, MAX_REMEMBERED_LEASES};
pub use db::make_pool;
pub use error::{Error, ErrorKind, Result};
pub use flow::{QueueUpdate, RateLimit, MAX_GROUP_LENGTH, MAX_RATE_PERIOD};
pub use message::{ArchivedMessage, Message, QueueInfo, QueueStats, VerifyReport, WorkerInfo};
pub use producer::{EnqueueOptions, Producer, MAX_DEDUP_KEY_LENGTH};
pub use queries::{functions, migrations, Function, Migration};
pub use task::{Task, TaskHandler, TASK_HEADER};
pub use schedule::{Every, Missed, Schedule, ScheduleInfo};
pub use tls::SslMode;
pub use validate::{validate_queue_name, validate_schema_name, MAX_QUEUE_NAME_LENGTH};
pub use worker::{
    Backoff, JobError, JobEvent, JobEventKind, Prefetch, QueueSettings, Queues, Worker, WorkerOptions,
    WorkerStats,
};

/// Not part of the API: the typed query layer (one method of [`Db`](internal::Db)
/// per named query), for rust/tests. May change in any release.
#[doc(hidden)]
pub mod internal {
    pub use crate::calls::{
        Dequeued, Enqueue, FailKind, FailOutcome, Failure, Fence, Fenced, FunctionRecord, Heartbeat,
        MigrationRecord,
    };
    pub use crate::db::Db;
    pub use crate::schedule::{plan, Timing};
}

/// Re-exported so callers can name the pool and driver types without a version clash.
pub use deadpool_postgres;
pub use tokio_postgres;
