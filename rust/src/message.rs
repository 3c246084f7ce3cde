//! The values pgqrs hands back: messages, queues, statistics, reports
//! (the same fields as Python's `_models.py`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::col;
use crate::error::{Error, Result};
use crate::flow::RateLimit;

/// One job. `payload` is the decoded JSON value.
///
/// A dequeued message carries its `lease`: the token that fences every later
/// archive, delete, extend or release to the consumer holding it, until
/// `visible_until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: i64,
    pub queue: String,
    pub payload: Value,
    pub priority: i32,
    /// Deliveries so far (counted at dequeue).
    pub attempts: i32,
    pub enqueued_at: DateTime<Utc>,
    pub dequeued_at: Option<DateTime<Utc>>,
    /// Until when the message is invisible (leased, or delayed).
    pub visible_until: DateTime<Utc>,
    /// A JSON object (`{}` when none were given).
    pub headers: Value,
    pub lease: Option<Uuid>,
    pub dedup_key: Option<String>,
    pub last_error: Option<Value>,
    /// False when enqueue found a waiting message with the same dedup key and
    /// returned it instead of adding a new one.
    pub inserted: bool,
    /// The message's group (flow control, docs/flow-control.md); None: no group.
    pub group: Option<String>,
    /// What the running handler last recorded (`set_progress`); peek shows it.
    pub progress: Option<Value>,
    /// Set by the worker when a cancellation of this delivery was requested
    /// (`Admin::cancel`); shared by the message's clones.
    pub(crate) cancel: CancelFlag,
    /// The worker or consumer that leased it, for [`Message::set_progress`].
    pub(crate) owner: Owner,
}

/// The client a leased message came from (None: enqueued or peeked). Ignored by `==`.
#[derive(Clone, Default)]
pub(crate) struct Owner(pub(crate) Option<crate::db::Db>);

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Owner(leased)" } else { "Owner(none)" })
    }
}

impl PartialEq for Owner {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// The worker's "this message was cancelled" flag, shared by a message's
/// clones (the handler's copy sees it). Ignored by `==`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CancelFlag(std::sync::Arc<CancelInner>);

#[derive(Debug, Default)]
pub(crate) struct CancelInner {
    set: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl PartialEq for CancelFlag {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl CancelFlag {
    pub(crate) fn cancel(&self) -> bool {
        let first = !self.0.set.swap(true, std::sync::atomic::Ordering::SeqCst);
        self.0.notify.notify_waiters();
        first
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.set.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once the flag is set (at once if it is).
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// A json/jsonb column's text, not decoded yet: [`crate::payload::decode`]
/// checks the payload rules and decodes it, so that a row breaking them can
/// be set aside alone instead of failing the whole result.
pub(crate) struct JsonText<'a>(pub &'a str);

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        // jsonb's binary form is a version byte (1) and the JSON text.
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, rest)) => rest,
                _ => return Err("unsupported jsonb binary version".into()),
            }
        } else {
            raw
        };
        Ok(JsonText(std::str::from_utf8(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }
}

/// A json/jsonb column, decoded: `Err(reason)` when it breaks the payload
/// rules or does not decode.
fn json_col(row: &Row, name: &str) -> Result<Option<std::result::Result<Value, String>>> {
    Ok(col::<Option<JsonText<'_>>>(row, name)?.map(|t| crate::payload::decode(t.0)))
}

/// A leased row whose payload, headers or last error this client cannot
/// decode or that breaks the payload rules (written by other means than
/// pgqrs's functions): a dequeue archives it as dead with a PayloadError
/// record and delivers the rest of the batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Undecodable {
    pub id: i64,
    pub lease: Option<Uuid>,
    pub attempts: i32,
    /// e.g. "payload is nested deeper than 64 levels ...".
    pub reason: String,
}

impl Message {
    pub(crate) fn from_row(row: &Row) -> Result<Message> {
        Self::from_row_checked(row)?.map_err(|u| Error::payload(format!("message {}: {}", u.id, u.reason)))
    }

    /// The message, or what makes it [`Undecodable`] (an error only for a
    /// column of the wrong type).
    pub(crate) fn from_row_checked(row: &Row) -> Result<std::result::Result<Message, Undecodable>> {
        let has_inserted = row.columns().iter().any(|c| c.name() == "inserted");
        let has_group = row.columns().iter().any(|c| c.name() == "group_key");
        let id: i64 = col(row, "id")?;
        let lease: Option<Uuid> = col(row, "lease")?;
        let attempts: i32 = col(row, "attempts")?;
        let bad = |what: &str, reason: String| Undecodable {
            id,
            lease,
            attempts,
            reason: format!("{what} {reason}"),
        };
        let payload = match json_col(row, "payload")? {
            Some(Ok(v)) => v,
            Some(Err(reason)) => return Ok(Err(bad("payload", reason))),
            None => Value::Null,
        };
        let headers = match json_col(row, "headers")? {
            Some(Ok(v)) => v,
            Some(Err(reason)) => return Ok(Err(bad("headers", reason))),
            None => Value::Object(Default::default()),
        };
        let last_error = match json_col(row, "last_error")? {
            Some(Ok(v)) => Some(v),
            Some(Err(reason)) => return Ok(Err(bad("last_error", reason))),
            None => None,
        };
        Ok(Ok(Message {
            id,
            queue: col(row, "queue")?,
            payload,
            priority: col(row, "priority")?,
            attempts,
            enqueued_at: col(row, "enqueued_at")?,
            dequeued_at: col(row, "dequeued_at")?,
            visible_until: col(row, "visible_until")?,
            headers,
            lease,
            dedup_key: col(row, "dedup_key")?,
            last_error,
            inserted: if has_inserted { col(row, "inserted")? } else { true },
            group: if has_group { col(row, "group_key")? } else { None },
            progress: if row.columns().iter().any(|c| c.name() == "progress") {
                col(row, "progress")?
            } else {
                None
            },
            cancel: CancelFlag::default(),
            owner: Owner::default(),
        }))
    }

    /// The same columns read through sqlx (feature `sqlx`).
    #[cfg(feature = "sqlx")]
    pub(crate) fn from_sqlx_row(row: &sqlx::postgres::PgRow) -> Result<Message> {
        use sqlx::Row as _;
        fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
            row: &'r sqlx::postgres::PgRow,
            name: &str,
        ) -> Result<T> {
            row.try_get(name).map_err(|e| {
                Error::new(crate::ErrorKind::Database, format!("cannot read column {name:?}: {e}"))
            })
        }
        let has_inserted = row.columns().iter().any(|c| sqlx::Column::name(c) == "inserted");
        Ok(Message {
            id: get(row, "id")?,
            queue: get(row, "queue")?,
            payload: get(row, "payload")?,
            priority: get(row, "priority")?,
            attempts: get(row, "attempts")?,
            enqueued_at: get(row, "enqueued_at")?,
            dequeued_at: get(row, "dequeued_at")?,
            visible_until: get(row, "visible_until")?,
            headers: get::<Option<Value>>(row, "headers")?
                .unwrap_or_else(|| Value::Object(Default::default())),
            lease: get(row, "lease")?,
            dedup_key: get(row, "dedup_key")?,
            last_error: get(row, "last_error")?,
            inserted: if has_inserted { get(row, "inserted")? } else { true },
            group: None,
            progress: None,
            cancel: CancelFlag::default(),
            owner: Owner::default(),
        })
    }

    /// Wait until this message is archived and return its row (as
    /// [`Admin::wait`](crate::Admin::wait)): for the message a
    /// [`Producer`](crate::Producer)'s enqueue returned. `WaitTimeout` after
    /// `timeout` (None: wait for ever).
    pub async fn wait(&self, timeout: Option<std::time::Duration>) -> Result<ArchivedMessage> {
        let Some(db) = &self.owner.0 else {
            return Err(Error::invalid(format!(
                "message {} cannot wait: only a message from a Producer's enqueue or a Consumer's \
                 dequeue can (use Admin::wait)",
                self.id
            )));
        };
        crate::wait::wait_archived(db, &db.config, self.id, timeout).await
    }

    /// Record `progress` (any JSON value but null) on this leased message's
    /// row, fenced by its lease (`LeaseExpired` when lost): from a worker's
    /// handler, or a message a [`crate::Consumer`] dequeued. Peek, the
    /// dashboard and, once archived, the archive show the latest. Returns true
    /// when a cancellation was requested (stop: the message is archived as
    /// `cancelled`).
    pub async fn set_progress(&self, progress: &Value) -> Result<bool> {
        let (Some(db), Some(lease)) = (&self.owner.0, self.lease) else {
            return Err(Error::invalid(format!(
                "message {} cannot set progress: it was not leased by a worker or Consumer",
                self.id
            )));
        };
        if progress.is_null() {
            return Err(Error::invalid("progress must be a JSON value, not null"));
        }
        let text = crate::payload::encode(progress, "progress", db.config.max_payload_bytes())?;
        match db.message_set_progress(self.id, lease, &text).await? {
            crate::calls::Fence::Ok => Ok(false),
            crate::calls::Fence::Cancelled => {
                self.cancel.cancel();
                Ok(true)
            }
            _ => Err(Error::lease(
                crate::error::ErrorKind::LeaseExpired,
                format!(
                    "cannot set progress of message {}: the lease expired and the message was \
                     redelivered, or archived since; nothing was changed",
                    self.id
                ),
                vec![self.id],
                vec![],
            )),
        }
    }

    /// True once the worker learned that this message was cancelled
    /// (`Admin::cancel`) while its handler runs: the worker drops the
    /// handler's future at its next await; a handler doing blocking work may
    /// check this and stop. The message is archived as `cancelled`.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_set()
    }

    /// The payload decoded into `T` through serde (a Payload error when it does not fit).
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            Error::payload(format!(
                "payload of message {} does not decode as {}: {e}",
                self.id,
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A queue and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueInfo {
    pub name: String,
    /// Seconds a dequeued message stays invisible (the lease).
    pub visibility_timeout: f64,
    pub max_attempts: i32,
    pub paused: bool,
    pub created_at: DateTime<Utc>,
    /// Flow control (docs/flow-control.md); None: no limit.
    pub concurrency_limit: Option<i32>,
    pub group_concurrency: Option<i32>,
    pub rate_limit: Option<RateLimit>,
}

impl QueueInfo {
    pub(crate) fn from_row(row: &Row) -> Result<QueueInfo> {
        Ok(QueueInfo {
            name: col(row, "name")?,
            visibility_timeout: col(row, "visibility_timeout")?,
            max_attempts: col(row, "max_attempts")?,
            paused: col(row, "paused")?,
            created_at: col(row, "created_at")?,
            concurrency_limit: col(row, "concurrency_limit")?,
            group_concurrency: col(row, "group_concurrency")?,
            rate_limit: rate_limit(row)?,
        })
    }
}

/// Counts for one queue, from `Admin::queue_stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    pub queue: String,
    pub paused: bool,
    /// Visible now: waiting, or leased once and expired.
    pub ready: i64,
    /// Leased and not yet expired.
    pub in_flight: i64,
    /// Waiting for their delay (or a retry backoff) to pass.
    pub delayed: i64,
    /// Archived messages by status, e.g. {"completed": 10, "dead": 1}.
    pub archived: BTreeMap<String, i64>,
    /// Seconds since the oldest ready message was enqueued; None when none is ready.
    pub oldest_ready_age: Option<f64>,
    /// The backend whose open snapshot is oldest (it holds back vacuum).
    pub oldest_xmin_pid: Option<i32>,
    /// How long that backend's transaction has been open, in seconds.
    pub oldest_xmin_age: Option<f64>,
    /// Flow control (docs/flow-control.md); None: no limit.
    pub concurrency_limit: Option<i32>,
    pub group_concurrency: Option<i32>,
    pub rate_limit: Option<RateLimit>,
}

fn rate_limit(row: &Row) -> Result<Option<RateLimit>> {
    Ok(RateLimit::from_columns(
        col(row, "rate_count")?,
        col(row, "rate_period")?,
        col(row, "rate_per_group")?,
    ))
}

impl QueueStats {
    pub(crate) fn from_row(row: &Row) -> Result<QueueStats> {
        let archived: Option<Value> = col(row, "archived")?;
        let archived = archived
            .as_ref()
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap_or_default())).collect())
            .unwrap_or_default();
        Ok(QueueStats {
            queue: col(row, "name")?,
            paused: col(row, "paused")?,
            ready: col(row, "ready")?,
            in_flight: col(row, "in_flight")?,
            delayed: col(row, "delayed")?,
            archived,
            oldest_ready_age: col(row, "oldest_ready_age")?,
            oldest_xmin_pid: col(row, "oldest_xmin_pid")?,
            oldest_xmin_age: col(row, "oldest_xmin_age")?,
            concurrency_limit: col(row, "concurrency_limit")?,
            group_concurrency: col(row, "group_concurrency")?,
            rate_limit: rate_limit(row)?,
        })
    }
}

/// A finished message in the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedMessage {
    pub id: i64,
    pub queue: String,
    pub payload: Value,
    pub priority: i32,
    pub attempts: i32,
    pub enqueued_at: DateTime<Utc>,
    pub dequeued_at: Option<DateTime<Utc>>,
    pub dedup_key: Option<String>,
    pub headers: Value,
    pub archived_at: DateTime<Utc>,
    pub status: String,
    pub result: Option<Value>,
    pub error: Option<Value>,
    /// The progress the handler last recorded (None: none).
    pub progress: Option<Value>,
}

impl ArchivedMessage {
    pub(crate) fn from_row(row: &Row) -> Result<ArchivedMessage> {
        Ok(ArchivedMessage {
            id: col(row, "id")?,
            queue: col(row, "queue")?,
            payload: col(row, "payload")?,
            priority: col(row, "priority")?,
            attempts: col(row, "attempts")?,
            enqueued_at: col(row, "enqueued_at")?,
            dequeued_at: col(row, "dequeued_at")?,
            dedup_key: col(row, "dedup_key")?,
            headers: col(row, "headers")?,
            archived_at: col(row, "archived_at")?,
            status: col(row, "status")?,
            result: col(row, "result")?,
            error: col(row, "error")?,
            progress: col(row, "progress")?,
        })
    }
}

/// A worker process as recorded in the workers table.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    pub id: i64,
    pub hostname: String,
    pub pid: i32,
    pub queues: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    /// running, stopping, stopped or dead.
    pub status: String,
    /// Messages it holds leased right now.
    pub leased: i64,
}

impl WorkerInfo {
    pub(crate) fn from_row(row: &Row) -> Result<WorkerInfo> {
        Ok(WorkerInfo {
            id: col(row, "id")?,
            hostname: col(row, "hostname")?,
            pid: col(row, "pid")?,
            queues: col(row, "queues")?,
            started_at: col(row, "started_at")?,
            heartbeat_at: col(row, "heartbeat_at")?,
            stopped_at: col(row, "stopped_at")?,
            status: col(row, "status")?,
            leased: col(row, "leased")?,
        })
    }
}

/// What `Admin::verify()` found: is the schema there, complete and unmodified?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub schema: String,
    pub installed: bool,
    /// Highest migration version applied (0 when not installed).
    pub current_version: i32,
    /// Highest migration version this library ships.
    pub latest_version: i32,
    /// Migrations (`NNNN_name`) this library ships that the database has not
    /// applied, and functions (`function name`) it lacks or never recorded.
    pub missing: Vec<String>,
    /// Applied migrations, and recorded functions, whose checksum differs from the shipped file.
    pub modified: Vec<String>,
    /// Applied migrations and recorded functions this library does not know
    /// (a newer pgqrs installed them).
    pub unknown: Vec<String>,
}

impl VerifyReport {
    /// Installed, complete and unmodified.
    pub fn ok(&self) -> bool {
        self.installed && self.missing.is_empty() && self.modified.is_empty() && self.unknown.is_empty()
    }

    /// One sentence for people.
    pub fn describe(&self) -> String {
        if !self.installed {
            return format!(
                "schema {:?} is not installed: run Admin::install() or `pgqrs install`",
                self.schema
            );
        }
        if self.ok() {
            return format!("schema {:?} is up to date (version {})", self.schema, self.current_version);
        }
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing {} (run install)", self.missing.join(", ")));
        }
        if !self.modified.is_empty() {
            parts.push(format!("changed since they were applied: {}", self.modified.join(", ")));
        }
        if !self.unknown.is_empty() {
            parts.push(format!("newer than this pgqrs: {}", self.unknown.join(", ")));
        }
        format!("schema {:?}: {}", self.schema, parts.join("; "))
    }
}
