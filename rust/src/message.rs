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
        }))
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
}

impl QueueInfo {
    pub(crate) fn from_row(row: &Row) -> Result<QueueInfo> {
        Ok(QueueInfo {
            name: col(row, "name")?,
            visibility_timeout: col(row, "visibility_timeout")?,
            max_attempts: col(row, "max_attempts")?,
            paused: col(row, "paused")?,
            created_at: col(row, "created_at")?,
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
