//! The typed query layer: one `async fn` per named query of `sql/queries/`,
//! named as the query, with typed Rust parameters (as Python's
//! `pgqrs._async._calls`). The `(&dyn ToSql, Type)` slices and the column
//! names stay in here, so no call site passes a positional parameter list;
//! [`Query`] stays the registry of the embedded texts.
//!
//! Each runs on a pooled connection; those that `Admin::install` and
//! `Producer::enqueue_in` run inside the caller's transaction take `on:
//! Some(client)`. Among them, the calls of the server functions that make the
//! worker's decisions once for both languages: `message_fail` (retry with the
//! backoff, or dead), `worker_alive` (a heartbeat that registers a pruned
//! worker again under its id) and `message_dequeue` (which archives exhausted
//! rows and fills its batch itself).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use crate::admin::{bounded_secs, Grants, MAX_BATCH};
use crate::db::{col, Db, Param};
use crate::error::{Error, ErrorKind, Result};
use crate::flow::{QueueUpdate, RateLimit};
use crate::message::{ArchivedMessage, Message, QueueInfo, QueueStats, Undecodable, WorkerInfo};
use crate::queries::Query;
use crate::schedule::{ScheduleInfo, ScheduleSpec};
use crate::worker::Backoff;

/// What a fenced statement (`message_archive`, `_release`, `_delete`,
/// `_extend`) did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// Done: the lease still held.
    Ok,
    /// The message is there under another lease (or none): left untouched.
    LeaseLost,
    /// No such waiting or in-flight message.
    NotFound,
    /// Done, and a cancellation of the message was requested (`Admin::cancel`):
    /// an archive wrote status cancelled; an extend kept the lease.
    Cancelled,
}

/// One row of a fenced statement's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Fenced {
    pub id: i64,
    pub outcome: Fence,
    /// The new end of the lease (`message_extend`).
    pub visible_until: Option<DateTime<Utc>>,
}

/// What one `message_dequeue` call leased, and how many picked rows it
/// archived as dead (delivered max_attempts times already).
#[derive(Debug, Clone, PartialEq)]
pub struct Dequeued {
    pub messages: Vec<Message>,
    pub dead: usize,
    /// When the queue's rate limit kept the batch short: how long until its
    /// next token is due (a 'throttled' row); else None.
    pub retry_after: Option<Duration>,
    /// Leased rows this client cannot decode (or that break the payload
    /// rules): the caller dead-letters them (`consumer::bury_undecodable`).
    pub(crate) undecodable: Vec<Undecodable>,
}

/// The parameters of `message_enqueue`, one array element per message.
#[derive(Debug, Clone)]
pub struct Enqueue {
    pub queue: String,
    /// JSON texts.
    pub payloads: Vec<String>,
    pub priorities: Vec<i32>,
    /// Seconds.
    pub delays: Vec<Option<f64>>,
    pub available_at: Vec<Option<DateTime<Utc>>>,
    pub dedup_keys: Vec<Option<String>>,
    /// JSON object texts.
    pub headers: Vec<Option<String>>,
    /// Message groups (flow control).
    pub groups: Vec<Option<String>>,
}

/// A row of `schedule_due`: a schedule to fire or plan now.
#[derive(Debug, Clone, PartialEq)]
pub struct DueSchedule {
    pub name: String,
    pub cron: Option<String>,
    pub interval: Option<i64>,
    pub time_zone: String,
    pub missed: String,
    pub next_slot: Option<DateTime<Utc>>,
    pub last_slot: Option<DateTime<Utc>>,
}

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
    /// A cancellation was requested: archived as cancelled instead.
    Cancelled,
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

/// One row of `function_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRecord {
    pub name: String,
    /// The checksum in the function ledger; None when not recorded.
    pub checksum: Option<String>,
    /// A function of that name exists in the schema.
    pub present: bool,
}

/// One row of `migration_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRecord {
    pub version: i32,
    pub name: String,
    pub checksum: String,
}

fn fenced(rows: &[Row]) -> Result<Vec<Fenced>> {
    rows.iter()
        .map(|r| {
            let outcome: String = col(r, "outcome")?;
            let outcome = match outcome.as_str() {
                "ok" => Fence::Ok,
                "lease_lost" => Fence::LeaseLost,
                "not_found" => Fence::NotFound,
                "cancelled" => Fence::Cancelled,
                other => return Err(unexpected("outcome", other)),
            };
            Ok(Fenced { id: col(r, "id")?, outcome, visible_until: col(r, "visible_until")? })
        })
        .collect()
}

fn unexpected(what: &str, value: &str) -> Error {
    Error::new(ErrorKind::Database, format!("unexpected {what} {value:?} from the database"))
}

fn one(rows: Vec<Row>, query: &str) -> Result<Row> {
    rows.into_iter().next().ok_or_else(|| Error::new(ErrorKind::Database, format!("{query} returned no row")))
}

impl Db {
    /// Run `q` on `on` (the caller's connection or transaction) or a pooled connection.
    async fn run(
        &self,
        on: Option<&Client>,
        q: Query,
        params: &[Param<'_>],
        queue: Option<&str>,
    ) -> Result<Vec<Row>> {
        match on {
            Some(client) => self.fetch_on(client, q, params, queue).await,
            None => self.fetch(q, params, queue).await,
        }
    }

    /// `archive_list`: archived messages, newest first, of `queue` and
    /// `status` (None: all), at most `limit`.
    pub async fn archive_list(
        &self,
        queue: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ArchivedMessage>> {
        let params: [Param<'_>; 3] = [(&queue, Type::TEXT), (&status, Type::TEXT), (&limit, Type::INT8)];
        let rows = self.run(None, Query::ArchiveList, &params, None).await?;
        rows.iter().map(ArchivedMessage::from_row).collect()
    }

    /// `archive_get`: the archived rows of `ids` (those archived so far).
    pub async fn archive_get(&self, on: Option<&Client>, ids: &[i64]) -> Result<Vec<ArchivedMessage>> {
        let rows = self.run(on, Query::ArchiveGet, &[(&ids, Type::INT8_ARRAY)], None).await?;
        rows.iter().map(ArchivedMessage::from_row).collect()
    }

    /// `archive_wait`: register interest in `ids` being archived for `secs`
    /// (None: unregister), so the archive trigger NOTIFYs; their archived rows so far.
    pub async fn archive_wait(
        &self,
        on: Option<&Client>,
        ids: &[i64],
        secs: Option<f64>,
    ) -> Result<Vec<ArchivedMessage>> {
        let params: [Param<'_>; 2] = [(&ids, Type::INT8_ARRAY), (&secs, Type::FLOAT8)];
        let rows = self.run(on, Query::ArchiveWait, &params, None).await?;
        rows.iter().map(ArchivedMessage::from_row).collect()
    }

    /// `archive_prune`: delete up to `batch` archived messages of `queue`
    /// older than its retention; how many, or None (another session prunes
    /// it now, or the queue keeps its archive).
    pub async fn archive_prune(&self, queue: &str, batch: i32) -> Result<Option<i64>> {
        let params: [Param<'_>; 2] = [(&queue, Type::TEXT), (&batch, Type::INT4)];
        let rows = self.run(None, Query::ArchivePrune, &params, Some(queue)).await?;
        col(&one(rows, "archive_prune")?, "pruned")
    }

    /// `message_cancel`: per distinct id (ascending), its outcome
    /// ('cancelled', 'cancel_requested', 'archived', 'not_found') and archive status.
    pub async fn message_cancel(&self, ids: &[i64]) -> Result<Vec<(i64, String, Option<String>)>> {
        let rows = self.run(None, Query::MessageCancel, &[(&ids, Type::INT8_ARRAY)], None).await?;
        rows.iter().map(|r| Ok((col(r, "id")?, col(r, "outcome")?, col(r, "status")?))).collect()
    }

    /// `message_cancelled`: the (id, lease) of the messages worker `worker_id`
    /// holds whose cancellation was requested.
    pub async fn message_cancelled(&self, worker_id: i64) -> Result<Vec<(i64, Uuid)>> {
        let rows = self.run(None, Query::MessageCancelled, &[(&worker_id, Type::INT8)], None).await?;
        rows.iter().map(|r| Ok((col(r, "id")?, col(r, "lease")?))).collect()
    }

    /// `message_set_progress`: record `progress` (a JSON text) of message
    /// `id`, fenced by `lease`.
    pub async fn message_set_progress(&self, id: i64, lease: Uuid, progress: &str) -> Result<Fence> {
        let params: [Param<'_>; 3] = [(&id, Type::INT8), (&lease, Type::UUID), (&progress, Type::TEXT)];
        let rows = self.run(None, Query::MessageSetProgress, &params, None).await?;
        Ok(fenced(&rows)?.first().map(|f| f.outcome).unwrap_or(Fence::NotFound))
    }

    /// `queue_set_archive_retention`: keep `name`'s archive for `secs` (None:
    /// for ever); false when the queue is missing.
    pub async fn queue_set_archive_retention(&self, name: &str, secs: Option<f64>) -> Result<bool> {
        let params: [Param<'_>; 2] = [(&name, Type::TEXT), (&secs, Type::FLOAT8)];
        Ok(!self.run(None, Query::QueueSetArchiveRetention, &params, Some(name)).await?.is_empty())
    }

    /// `archive_purge`: delete the archive rows older than `older_than` (of
    /// `queue` and `status`, None: all); returns how many.
    pub async fn archive_purge(
        &self,
        older_than: Duration,
        queue: Option<&str>,
        status: Option<&str>,
    ) -> Result<i64> {
        let age = older_than.as_secs_f64();
        let params: [Param<'_>; 3] = [(&age, Type::FLOAT8), (&queue, Type::TEXT), (&status, Type::TEXT)];
        let rows = self.run(None, Query::ArchivePurge, &params, None).await?;
        col(&one(rows, "archive_purge")?, "purged")
    }

    /// `archive_redrive`: put archived messages of `queue` with `status`
    /// (all, or only `ids`) back on the queue; returns the ids put back.
    pub async fn archive_redrive(&self, queue: &str, status: &str, ids: Option<&[i64]>) -> Result<Vec<i64>> {
        let ids: Option<Vec<i64>> = ids.map(<[i64]>::to_vec);
        let params: [Param<'_>; 3] = [(&queue, Type::TEXT), (&status, Type::TEXT), (&ids, Type::INT8_ARRAY)];
        let rows = self.run(None, Query::ArchiveRedrive, &params, Some(queue)).await?;
        rows.iter().map(|r| col(r, "id")).collect()
    }

    /// `function_list`: the ledger's record and presence of each function
    /// shipped (`names`) or recorded.
    pub async fn function_list(&self, on: Option<&Client>, names: &[String]) -> Result<Vec<FunctionRecord>> {
        let rows = self.run(on, Query::FunctionList, &[(&names, Type::TEXT_ARRAY)], None).await?;
        rows.iter()
            .map(|r| {
                Ok(FunctionRecord {
                    name: col(r, "name")?,
                    checksum: col(r, "checksum")?,
                    present: col(r, "present")?,
                })
            })
            .collect()
    }

    /// `function_record`: record function `name`'s `checksum` just after its
    /// file ran; returns how many functions of that name the schema holds.
    pub async fn function_record(&self, on: &Client, name: &str, checksum: &str) -> Result<i64> {
        let params: [Param<'_>; 2] = [(&name, Type::TEXT), (&checksum, Type::TEXT)];
        let rows = self.run(Some(on), Query::FunctionRecord, &params, None).await?;
        col(&one(rows, "function_record")?, "overloads")
    }

    /// `message_archive`, one row per message: status, result and error (JSON
    /// texts) per message, fenced by lease.
    pub async fn message_archive(
        &self,
        ids: &[i64],
        leases: &[Uuid],
        statuses: &[String],
        results: &[Option<String>],
        errors: &[Option<String>],
        queue: Option<&str>,
    ) -> Result<Vec<Fenced>> {
        let params: [Param<'_>; 5] = [
            (&ids, Type::INT8_ARRAY),
            (&leases, Type::UUID_ARRAY),
            (&statuses, Type::TEXT_ARRAY),
            (&results, Type::TEXT_ARRAY),
            (&errors, Type::TEXT_ARRAY),
        ];
        fenced(&self.run(None, Query::MessageArchive, &params, queue).await?)
    }

    /// `message_delete`: delete leased messages, fenced by lease.
    pub async fn message_delete(
        &self,
        ids: &[i64],
        leases: &[Uuid],
        queue: Option<&str>,
    ) -> Result<Vec<Fenced>> {
        let params: [Param<'_>; 2] = [(&ids, Type::INT8_ARRAY), (&leases, Type::UUID_ARRAY)];
        fenced(&self.run(None, Query::MessageDelete, &params, queue).await?)
    }

    /// `message_dequeue`: lease up to `limit` ready messages of `queue` for
    /// `visibility_timeout` (None: the queue's), taken by `worker_id` (None:
    /// a plain consumer). Exhausted rows go to the archive as dead in the
    /// same call, which fills the batch past them. QueueNotFound when the
    /// queue does not exist.
    pub async fn message_dequeue(
        &self,
        queue: &str,
        limit: i64,
        visibility_timeout: Option<Duration>,
        worker_id: Option<i64>,
    ) -> Result<Dequeued> {
        let vt = visibility_timeout.map(|d| d.as_secs_f64());
        let params: [Param<'_>; 4] =
            [(&queue, Type::TEXT), (&limit, Type::INT8), (&vt, Type::FLOAT8), (&worker_id, Type::INT8)];
        let rows = self.run(None, Query::MessageDequeue, &params, Some(queue)).await?;
        let mut out = Dequeued { messages: Vec::new(), dead: 0, retry_after: None, undecodable: Vec::new() };
        for row in &rows {
            let outcome: String = col(row, "outcome")?;
            match outcome.as_str() {
                "leased" => match Message::from_row_checked(row)? {
                    Ok(m) => out.messages.push(m),
                    Err(u) => out.undecodable.push(u),
                },
                "dead" => out.dead += 1,
                "throttled" => {
                    let secs: Option<f64> = col(row, "retry_after")?;
                    out.retry_after = secs.map(|s| Duration::from_secs_f64(s.max(0.0)));
                }
                // Its cancel was requested while leased: archived, not delivered.
                "cancelled" => {}
                "missing" => return Err(Error::queue_not_found(queue)),
                other => return Err(unexpected("outcome", other)),
            }
        }
        Ok(out)
    }

    /// `message_enqueue`: the messages of `p`, in order (a waiting one with
    /// the same dedup key instead of a new one). QueueNotFound when the queue
    /// does not exist.
    pub async fn message_enqueue(&self, on: Option<&Client>, p: &Enqueue) -> Result<Vec<Message>> {
        let params: [Param<'_>; 8] = [
            (&p.queue, Type::TEXT),
            (&p.payloads, Type::TEXT_ARRAY),
            (&p.priorities, Type::INT4_ARRAY),
            (&p.delays, Type::FLOAT8_ARRAY),
            (&p.available_at, Type::TIMESTAMPTZ_ARRAY),
            (&p.dedup_keys, Type::TEXT_ARRAY),
            (&p.headers, Type::TEXT_ARRAY),
            (&p.groups, Type::TEXT_ARRAY),
        ];
        let rows = self.run(on, Query::MessageEnqueue, &params, Some(&p.queue)).await?;
        if rows.is_empty() {
            // The statement found no queue row to lock: the queue does not exist.
            return Err(Error::queue_not_found(&p.queue));
        }
        // The rows follow the input's order; the group is the one sent.
        rows.iter()
            .zip(&p.groups)
            .map(|(r, g)| Message::from_row(r).map(|m| Message { group: g.clone(), ..m }))
            .collect()
    }

    /// `message_enqueue` on an sqlx executor (feature `sqlx`): the same
    /// statement, its parameters bound by sqlx, sent unprepared (nothing
    /// left on the caller's connection).
    #[cfg(feature = "sqlx")]
    pub async fn message_enqueue_sqlx<'c, E>(&self, executor: E, p: &Enqueue) -> Result<Vec<Message>>
    where
        E: sqlx::PgExecutor<'c>,
    {
        let rows = sqlx::query(self.sql(Query::MessageEnqueue))
            .persistent(false)
            .bind(&p.queue)
            .bind(&p.payloads)
            .bind(&p.priorities)
            .bind(&p.delays)
            .bind(&p.available_at)
            .bind(&p.dedup_keys)
            .bind(&p.headers)
            .bind(&p.groups)
            .fetch_all(executor)
            .await
            .map_err(|e| crate::error::translate_sqlx(e, self.config.schema(), Some(&p.queue)))?;
        if rows.is_empty() {
            return Err(Error::queue_not_found(&p.queue));
        }
        // The rows follow the input's order; the group is the one sent.
        rows.iter()
            .zip(&p.groups)
            .map(|(r, g)| Message::from_sqlx_row(r).map(|m| Message { group: g.clone(), ..m }))
            .collect()
    }

    /// `message_extend`: keep the leases for `duration` more, fenced by lease.
    pub async fn message_extend(
        &self,
        ids: &[i64],
        leases: &[Uuid],
        duration: Duration,
        queue: Option<&str>,
    ) -> Result<Vec<Fenced>> {
        let secs = duration.as_secs_f64();
        let params: [Param<'_>; 3] =
            [(&ids, Type::INT8_ARRAY), (&leases, Type::UUID_ARRAY), (&secs, Type::FLOAT8)];
        fenced(&self.run(None, Query::MessageExtend, &params, queue).await?)
    }

    /// `message_fail`: for each failure whose lease still holds, release the
    /// message for a retry after its delay (or the backoff, computed in SQL),
    /// or archive it as dead when it was delivered the queue's max_attempts
    /// times (or `dead`). One outcome per failure, in order.
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
        backoff.check()?;
        let (base, max, jitter) = (backoff.base.as_secs_f64(), backoff.max.as_secs_f64(), backoff.jitter);
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
        let rows = self.run(None, Query::MessageFail, &params, queue).await?;
        rows.iter()
            .map(|r| {
                let outcome: String = col(r, "outcome")?;
                let outcome = match outcome.as_str() {
                    "retried" => FailKind::Retried,
                    "dead" => FailKind::Dead,
                    "cancelled" => FailKind::Cancelled,
                    "lease_lost" => FailKind::LeaseLost,
                    "not_found" => FailKind::NotFound,
                    other => return Err(unexpected("outcome", other)),
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

    /// `message_peek`: up to `limit` messages of `queue` in delivery order,
    /// with their state (ready, in_flight or delayed), not leased.
    pub async fn message_peek(&self, queue: &str, limit: i64) -> Result<Vec<(Message, String)>> {
        let params: [Param<'_>; 2] = [(&queue, Type::TEXT), (&limit, Type::INT8)];
        let rows = self.run(None, Query::MessagePeek, &params, Some(queue)).await?;
        rows.iter().map(|r| Ok((Message::from_row(r)?, col(r, "state")?))).collect()
    }

    /// `message_release`: give leased messages back after `delays`, with
    /// `errors` (JSON texts) and `refunds` (None: no attempt refunded), fenced by lease.
    pub async fn message_release(
        &self,
        ids: &[i64],
        leases: &[Uuid],
        delays: &[Duration],
        errors: &[Option<String>],
        refunds: Option<&[bool]>,
        queue: Option<&str>,
    ) -> Result<Vec<Fenced>> {
        let delays: Vec<f64> = delays.iter().map(Duration::as_secs_f64).collect();
        let params: [Param<'_>; 5] = [
            (&ids, Type::INT8_ARRAY),
            (&leases, Type::UUID_ARRAY),
            (&delays, Type::FLOAT8_ARRAY),
            (&errors, Type::TEXT_ARRAY),
            (&refunds, Type::BOOL_ARRAY),
        ];
        fenced(&self.run(None, Query::MessageRelease, &params, queue).await?)
    }

    /// `migration_installed`: does the schema's migration ledger exist? (`on`:
    /// inside the caller's transaction.)
    pub async fn migration_installed(&self, on: Option<&Client>) -> Result<bool> {
        let rows = self.run(on, Query::MigrationInstalled, &[], None).await?;
        match rows.first() {
            Some(r) => col(r, "installed"),
            None => Ok(false),
        }
    }

    /// `migration_list`: the migrations recorded as applied, by version.
    pub async fn migration_list(&self, on: Option<&Client>) -> Result<Vec<MigrationRecord>> {
        let rows = self.run(on, Query::MigrationList, &[], None).await?;
        rows.iter()
            .map(|r| {
                Ok(MigrationRecord {
                    version: col(r, "version")?,
                    name: col(r, "name")?,
                    checksum: col(r, "checksum")?,
                })
            })
            .collect()
    }

    /// `migration_lock`: the install lock of this schema, until the
    /// transaction of `on` ends.
    pub async fn migration_lock(&self, on: &Client) -> Result<()> {
        self.run(Some(on), Query::MigrationLock, &[], None).await.map(drop)
    }

    /// `migration_record`: record migration `version` as applied.
    pub async fn migration_record(
        &self,
        on: &Client,
        version: i32,
        name: &str,
        checksum: &str,
    ) -> Result<()> {
        let params: [Param<'_>; 3] = [(&version, Type::INT4), (&name, Type::TEXT), (&checksum, Type::TEXT)];
        self.run(Some(on), Query::MigrationRecord, &params, None).await.map(drop)
    }

    /// `queue_create`: the new queue, or None when the name is taken.
    pub async fn queue_create(
        &self,
        name: &str,
        visibility_timeout: Duration,
        max_attempts: i32,
        concurrency_limit: Option<i32>,
        group_concurrency: Option<i32>,
        rate_limit: Option<RateLimit>,
    ) -> Result<Option<QueueInfo>> {
        let vt = visibility_timeout.as_secs_f64();
        let count = rate_limit.map(|r| r.count);
        let period = rate_limit.map(|r| r.period.as_secs_f64());
        let per_group = rate_limit.map(|r| r.per_group);
        let params: [Param<'_>; 8] = [
            (&name, Type::TEXT),
            (&vt, Type::FLOAT8),
            (&max_attempts, Type::INT4),
            (&concurrency_limit, Type::INT4),
            (&group_concurrency, Type::INT4),
            (&count, Type::INT4),
            (&period, Type::FLOAT8),
            (&per_group, Type::BOOL),
        ];
        let rows = self.run(None, Query::QueueCreate, &params, Some(name)).await?;
        rows.first().map(QueueInfo::from_row).transpose()
    }

    /// `queue_update`: change the limits of queue `name` named in `change`
    /// (`Some(None)` removes one); its settings after, None when it is missing.
    pub async fn queue_update(&self, name: &str, change: &QueueUpdate) -> Result<Option<QueueInfo>> {
        let set_limit = change.concurrency_limit.is_some();
        let limit = change.concurrency_limit.flatten();
        let set_group = change.group_concurrency.is_some();
        let group = change.group_concurrency.flatten();
        let set_rate = change.rate_limit.is_some();
        let rate = change.rate_limit.flatten();
        let count = rate.map(|r| r.count);
        let period = rate.map(|r| r.period.as_secs_f64());
        let per_group = rate.map(|r| r.per_group);
        let params: [Param<'_>; 9] = [
            (&name, Type::TEXT),
            (&set_limit, Type::BOOL),
            (&limit, Type::INT4),
            (&set_group, Type::BOOL),
            (&group, Type::INT4),
            (&set_rate, Type::BOOL),
            (&count, Type::INT4),
            (&period, Type::FLOAT8),
            (&per_group, Type::BOOL),
        ];
        let rows = self.run(None, Query::QueueUpdate, &params, Some(name)).await?;
        rows.first().map(QueueInfo::from_row).transpose()
    }

    /// `queue_delete`: delete queue `name` with its messages; false when there is none.
    pub async fn queue_delete(&self, name: &str) -> Result<bool> {
        let rows = self.run(None, Query::QueueDelete, &[(&name, Type::TEXT)], Some(name)).await?;
        Ok(!rows.is_empty())
    }

    /// `queue_get`: queue `name`, if it exists.
    pub async fn queue_get(&self, name: &str) -> Result<Option<QueueInfo>> {
        let rows = self.run(None, Query::QueueGet, &[(&name, Type::TEXT)], Some(name)).await?;
        rows.first().map(QueueInfo::from_row).transpose()
    }

    /// `queue_list`: every queue, by name.
    pub async fn queue_list(&self) -> Result<Vec<QueueInfo>> {
        let rows = self.run(None, Query::QueueList, &[], None).await?;
        rows.iter().map(QueueInfo::from_row).collect()
    }

    /// `queue_purge`: delete every message of queue `name`; how many, or
    /// None when there is no such queue.
    pub async fn queue_purge(&self, name: &str) -> Result<Option<i64>> {
        let rows = self.run(None, Query::QueuePurge, &[(&name, Type::TEXT)], Some(name)).await?;
        rows.first().map(|r| col(r, "purged")).transpose()
    }

    /// `queue_set_paused`: pause or resume queue `name`; false when there is none.
    pub async fn queue_set_paused(&self, name: &str, paused: bool) -> Result<bool> {
        let params: [Param<'_>; 2] = [(&name, Type::TEXT), (&paused, Type::BOOL)];
        let rows = self.run(None, Query::QueueSetPaused, &params, Some(name)).await?;
        Ok(!rows.is_empty())
    }

    /// `queue_stats`: the counts of queue `name`, if it exists.
    pub async fn queue_stats(&self, name: &str) -> Result<Option<QueueStats>> {
        let rows = self.run(None, Query::QueueStats, &[(&name, Type::TEXT)], Some(name)).await?;
        rows.first().map(QueueStats::from_row).transpose()
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
        let params: [Param<'_>; 6] = [
            (&id, Type::INT8),
            (&status, Type::TEXT),
            (&hostname, Type::TEXT),
            (&pid, Type::INT4),
            (&queues, Type::TEXT_ARRAY),
            (&listening, Type::BOOL),
        ];
        let row = one(self.run(None, Query::WorkerAlive, &params, None).await?, "worker_alive")?;
        Ok(Heartbeat { status: col(&row, "status")?, registered: col(&row, "registered")? })
    }

    /// `role_grant`: the GRANT statements giving `role` the privileges of
    /// the kinds asked for (empty: no such role), run on `on` (the caller's
    /// transaction, which runs them).
    pub async fn role_grant(&self, on: &Client, role: &str, kinds: &Grants) -> Result<Vec<String>> {
        let params: [Param<'_>; 5] = [
            (&role, Type::TEXT),
            (&kinds.producer, Type::BOOL),
            (&kinds.consumer, Type::BOOL),
            (&kinds.admin, Type::BOOL),
            (&kinds.read_only, Type::BOOL),
        ];
        let rows = self.run(Some(on), Query::RoleGrant, &params, None).await?;
        rows.iter().map(|r| col(r, "statement")).collect()
    }

    /// `worker_list`: every known worker, newest first.
    pub async fn worker_list(&self) -> Result<Vec<WorkerInfo>> {
        let rows = self.run(None, Query::WorkerList, &[], None).await?;
        rows.iter().map(WorkerInfo::from_row).collect()
    }

    /// `worker_reap`: mark workers silent for `dead_after` dead, prune those
    /// stopped or dead for `prune_after`; returns (marked dead, pruned).
    pub async fn worker_reap(&self, dead_after: Duration, prune_after: Duration) -> Result<(i64, i64)> {
        let (dead, prune) = (dead_after.as_secs_f64(), prune_after.as_secs_f64());
        let params: [Param<'_>; 2] = [(&dead, Type::FLOAT8), (&prune, Type::FLOAT8)];
        let row = one(self.run(None, Query::WorkerReap, &params, None).await?, "worker_reap")?;
        Ok((col(&row, "marked_dead")?, col(&row, "pruned")?))
    }

    /// `worker_register`: a new worker row; returns its id.
    pub async fn worker_register(
        &self,
        hostname: &str,
        pid: i32,
        queues: &[String],
        listening: bool,
    ) -> Result<i64> {
        let params: [Param<'_>; 4] = [
            (&hostname, Type::TEXT),
            (&pid, Type::INT4),
            (&queues, Type::TEXT_ARRAY),
            (&listening, Type::BOOL),
        ];
        col(&one(self.run(None, Query::WorkerRegister, &params, None).await?, "worker_register")?, "id")
    }

    /// `worker_stop`: mark worker `id` stopped.
    pub async fn worker_stop(&self, id: i64) -> Result<()> {
        self.run(None, Query::WorkerStop, &[(&id, Type::INT8)], None).await.map(drop)
    }

    /// `schedule_upsert`: create the schedule (`replace`: or make it say
    /// this); the row and whether it was created. None: it exists and
    /// `replace` is false.
    pub(crate) async fn schedule_upsert(
        &self,
        spec: &ScheduleSpec,
        replace: bool,
    ) -> Result<Option<(ScheduleInfo, bool)>> {
        let missed = spec.missed.as_str();
        let params: [Param<'_>; 10] = [
            (&spec.name, Type::TEXT),
            (&spec.queue, Type::TEXT),
            (&spec.payload, Type::TEXT),
            (&spec.headers, Type::TEXT),
            (&spec.priority, Type::INT4),
            (&spec.cron, Type::TEXT),
            (&spec.interval, Type::INT8),
            (&spec.time_zone, Type::TEXT),
            (&missed, Type::TEXT),
            (&replace, Type::BOOL),
        ];
        let rows = self.run(None, Query::ScheduleUpsert, &params, Some(&spec.queue)).await?;
        match rows.first() {
            None => Ok(None),
            Some(r) => Ok(Some((ScheduleInfo::from_row(r)?, col(r, "created")?))),
        }
    }

    /// `schedule_list`: every schedule, by name.
    pub async fn schedule_list(&self) -> Result<Vec<ScheduleInfo>> {
        let rows = self.run(None, Query::ScheduleList, &[], None).await?;
        rows.iter().map(ScheduleInfo::from_row).collect()
    }

    /// `schedule_delete`: false when there is no such schedule.
    pub async fn schedule_delete(&self, name: &str) -> Result<bool> {
        let rows = self.run(None, Query::ScheduleDelete, &[(&name, Type::TEXT)], None).await?;
        Ok(!rows.is_empty())
    }

    /// `schedule_set_paused`: false when there is no such schedule.
    pub async fn schedule_set_paused(&self, name: &str, paused: bool) -> Result<bool> {
        let params: [Param<'_>; 2] = [(&name, Type::TEXT), (&paused, Type::BOOL)];
        let rows = self.run(None, Query::ScheduleSetPaused, &params, None).await?;
        Ok(!rows.is_empty())
    }

    /// `schedule_due`: the schedules to fire or plan now, the database's
    /// now(), and the earliest upcoming slot of the others.
    pub async fn schedule_due(&self) -> Result<(Vec<DueSchedule>, DateTime<Utc>, Option<DateTime<Utc>>)> {
        let rows = self.run(None, Query::ScheduleDue, &[], None).await?;
        let mut due = Vec::new();
        let mut now = None;
        let mut upcoming = None;
        for r in &rows {
            let name: Option<String> = col(r, "name")?;
            match name {
                Some(name) => due.push(DueSchedule {
                    name,
                    cron: col(r, "cron")?,
                    interval: col(r, "interval_seconds")?,
                    time_zone: col(r, "time_zone")?,
                    missed: col(r, "missed")?,
                    next_slot: col(r, "next_slot")?,
                    last_slot: col(r, "last_slot")?,
                }),
                None => {
                    now = Some(col(r, "now")?);
                    upcoming = col(r, "next_slot")?;
                }
            }
        }
        let now =
            now.ok_or_else(|| Error::new(ErrorKind::Database, "schedule_due returned no summary row"))?;
        Ok((due, now, upcoming))
    }

    /// `schedule_fire`: enqueue `slots` and plan `next_slot`, if the
    /// schedule's next_slot is still `expected`; (slot, message id) per message.
    pub async fn schedule_fire(
        &self,
        name: &str,
        slots: &[DateTime<Utc>],
        next_slot: DateTime<Utc>,
        expected: Option<DateTime<Utc>>,
    ) -> Result<Vec<(DateTime<Utc>, i64)>> {
        let params: [Param<'_>; 4] = [
            (&name, Type::TEXT),
            (&slots, Type::TIMESTAMPTZ_ARRAY),
            (&next_slot, Type::TIMESTAMPTZ),
            (&expected, Type::TIMESTAMPTZ),
        ];
        let rows = self.run(None, Query::ScheduleFire, &params, None).await?;
        rows.iter().map(|r| Ok((col(r, "slot")?, col(r, "message_id")?))).collect()
    }
}
