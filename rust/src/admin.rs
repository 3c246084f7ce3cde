//! Admin: install the schema, manage queues, inspect and maintain the archive.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::config::{Config, DEFAULT_MAX_ATTEMPTS, DEFAULT_VISIBILITY_TIMEOUT};
use crate::db::Db;
use crate::error::{Error, ErrorKind, Result};
use crate::flow::{check_limit, QueueUpdate, RateLimit};
use crate::message::{ArchivedMessage, Message, QueueInfo, QueueStats, VerifyReport, WorkerInfo};
use crate::schedule::{valid_schedule_name, Schedule, ScheduleInfo};
use crate::queries::{functions, migrations, render, SCHEMA_BOOTSTRAP, UNINSTALL};
use crate::validate::{validate_queue_name, validate_status};

/// Most messages one dequeue or batch call may touch: keeps a statement's
/// parameters and locks bounded.
pub const MAX_BATCH: usize = 10_000;
/// Time without a heartbeat after which `reap_workers` marks a worker dead.
pub const DEFAULT_WORKER_DEAD_AFTER: Duration = Duration::from_secs(60);
/// Time after which stopped and dead worker rows are pruned.
pub const DEFAULT_WORKER_PRUNE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// What [`Admin::grant`] gives a role (the kinds combine), as Python's
/// `Admin.grant(role, producer=, consumer=, admin=, read_only=)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants {
    /// Enqueue only.
    pub producer: bool,
    /// Dequeue and settle messages (archive, delete, extend, release, fail), run workers.
    pub consumer: bool,
    /// Everything, plus managing queues and the archive (not installing).
    pub admin: bool,
    /// List queues, stats, workers and the archive, peek at messages (dashboards, metrics).
    pub read_only: bool,
}

/// Longest role name PostgreSQL keeps, in bytes.
pub const MAX_ROLE_NAME_BYTES: usize = 63;

/// Settings of a new queue, for [`Admin::create_queue_with`].
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// How long a dequeued message stays invisible (default [`DEFAULT_VISIBILITY_TIMEOUT`]).
    pub visibility_timeout: Duration,
    /// Deliveries before a message goes to the archive as dead (default [`DEFAULT_MAX_ATTEMPTS`]).
    pub max_attempts: i32,
    /// Return the existing queue instead of a QueueExists error.
    pub exist_ok: bool,
    /// Flow control (docs/flow-control.md), enforced by the dequeue across
    /// every consumer and worker: messages leased at once at most.
    pub concurrency_limit: Option<i32>,
    /// Messages of one group leased at once at most (1: one at a time, in order).
    pub group_concurrency: Option<i32>,
    /// Dequeues per period, across the fleet (per group with `RateLimit::per_group`).
    pub rate_limit: Option<RateLimit>,
    /// Keep archived messages this long (None, the default: for ever);
    /// running workers delete older ones (see [`Admin::set_archive_retention`]).
    pub archive_retention: Option<Duration>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            exist_ok: false,
            concurrency_limit: None,
            group_concurrency: None,
            rate_limit: None,
            archive_retention: None,
        }
    }
}

pub(crate) fn batch_size(n: usize, what: &str) -> Result<i64> {
    if !(1..=MAX_BATCH).contains(&n) {
        return Err(Error::invalid(format!("{what} must be from 1 to {MAX_BATCH}, got {n}")));
    }
    Ok(n as i64)
}

/// Longest delay or lease accepted, in seconds (100 years, as in Python): beyond
/// any real use and well inside PostgreSQL's interval range, so a mistake fails
/// before any round trip rather than in the server (which only evaluates it
/// for a row it touches).
pub const MAX_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;

/// `d` in seconds, checked against [`MAX_SECONDS`].
pub(crate) fn bounded_secs(d: Duration, what: &str) -> Result<f64> {
    let secs = d.as_secs_f64();
    if secs > MAX_SECONDS {
        return Err(Error::invalid(format!(
            "{what} must be at most {MAX_SECONDS} seconds (100 years), got {secs}"
        )));
    }
    Ok(secs)
}

pub(crate) fn positive_secs(d: Duration, what: &str) -> Result<f64> {
    if d < Duration::from_micros(1) {
        // PostgreSQL's intervals count microseconds: a shorter one would be 0.
        return Err(Error::invalid(format!(
            "{what} must be at least 0.000001 seconds (1 microsecond), got {d:?}"
        )));
    }
    bounded_secs(d, what)
}

/// What [`Admin::cancel_batch`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was waiting or delayed: archived now with status `cancelled`.
    Cancelled,
    /// It is leased: marked; its holder archives it as `cancelled`.
    CancelRequested,
    /// It had already ended, with this archive status: nothing was changed.
    Archived(String),
    /// No such message.
    NotFound,
}

/// Schema and queue management. Safe to run through pgBouncer in transaction mode.
#[derive(Clone)]
pub struct Admin {
    db: Db,
}

impl Admin {
    /// Connect (`pool_min_size` connections now, so a bad DSN fails here).
    pub async fn new(config: &Config) -> Result<Admin> {
        Ok(Admin { db: Db::open(config, None).await? })
    }

    /// An Admin on a pool shared with other clients (see [`crate::make_pool`]).
    pub async fn with_pool(config: &Config, pool: Pool) -> Result<Admin> {
        Ok(Admin { db: Db::open(config, Some(pool)).await? })
    }

    /// The configuration this Admin uses.
    pub fn config(&self) -> &Config {
        &self.db.config
    }

    /// Apply the migrations the database lacks, in order, then (re)create the
    /// server functions whose file changed or that are gone; return what was
    /// applied (`NNNN_name` for a migration, `function name` for a function).
    ///
    /// Runs in one transaction under a transaction-level advisory lock (the
    /// same lock, bootstrap script and ledgers as the Python package, so
    /// either client installs for both). A no-op returning an empty list when
    /// the schema is up to date.
    pub async fn install(&self) -> Result<Vec<String>> {
        let schema = self.db.config.schema().to_string();
        let mut client = self.db.conn().await?;
        let tx = client.transaction().await.map_err(|e| self.db.translate(e))?;
        let on = tx.client();
        let mut applied = Vec::new();
        self.db.migration_lock(on).await?;
        tx.batch_execute(&render(SCHEMA_BOOTSTRAP, &schema)?).await.map_err(|e| self.db.translate(e))?;
        let done: Vec<i32> = self.db.migration_list(Some(on)).await?.iter().map(|m| m.version).collect();
        for m in migrations()? {
            if done.contains(&m.version) {
                continue;
            }
            tx.batch_execute(&render(m.text, &schema)?).await.map_err(|e| self.db.translate(e))?;
            self.db.migration_record(on, m.version, &m.name, &m.checksum()).await?;
            applied.push(m.label());
        }
        let shipped = functions()?;
        let names: Vec<String> = shipped.iter().map(|f| f.name.clone()).collect();
        let mut recorded: HashMap<String, (Option<String>, bool)> = HashMap::new();
        for f in self.db.function_list(Some(on), &names).await? {
            recorded.insert(f.name, (f.checksum, f.present));
        }
        for f in &shipped {
            let checksum = f.checksum();
            if let Some((Some(sum), true)) = recorded.get(&f.name) {
                if *sum == checksum {
                    continue;
                }
            }
            tx.batch_execute(&render(f.text, &schema)?).await.map_err(|e| self.db.translate(e))?;
            let overloads = self.db.function_record(on, &f.name, &checksum).await?;
            if overloads != 1 {
                return Err(Error::new(
                    ErrorKind::Database,
                    format!(
                        "install stopped (nothing was changed): {} now has {overloads} signatures in \
                         schema {schema:?}; sql/functions/ changed its arguments without a migration \
                         that drops the old one (see sql/README.md)",
                        f.name
                    ),
                ));
            }
            applied.push(f.label());
        }
        tx.commit().await.map_err(|e| self.db.translate(e))?;
        Ok(applied)
    }

    /// Drop what pgqrs created in the schema: the functions its ledger names,
    /// its tables and ledgers, and the schema when nothing else is left in it.
    ///
    /// Returns `false`, dropping nothing, when pgqrs is not installed in the
    /// schema (no migration ledger): a shared schema such as `public` may hold
    /// an application's own tables. Never CASCADE: a user object depending on
    /// a pgqrs object makes it fail and roll back, naming that object.
    pub async fn uninstall(&self) -> Result<bool> {
        let mut client = self.db.conn().await?;
        let tx = client.transaction().await.map_err(|e| self.db.translate(e))?;
        self.db.migration_lock(tx.client()).await?;
        if !self.db.migration_installed(Some(tx.client())).await? {
            return Ok(false);
        }
        tx.batch_execute(&render(UNINSTALL, self.db.config.schema())?)
            .await
            .map_err(|e| self.db.translate(e))?;
        tx.commit().await.map_err(|e| self.db.translate(e))?;
        Ok(true)
    }

    /// Compare the database's ledgers with the migrations and functions shipped here.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let shipped = migrations()?;
        let shipped_functions = functions()?;
        let latest = shipped.iter().map(|m| m.version).max().unwrap_or(0);
        let schema = self.db.config.schema().to_string();
        if !self.db.migration_installed(None).await? {
            return Ok(VerifyReport {
                schema,
                installed: false,
                current_version: 0,
                latest_version: latest,
                missing: shipped
                    .iter()
                    .map(|m| m.label())
                    .chain(shipped_functions.iter().map(|f| f.label()))
                    .collect(),
                modified: vec![],
                unknown: vec![],
            });
        }
        let mut applied: HashMap<i32, (String, String)> = HashMap::new();
        for m in self.db.migration_list(None).await? {
            applied.insert(m.version, (m.name, m.checksum));
        }
        let mut unknown: Vec<(i32, String)> = applied
            .iter()
            .filter(|(v, _)| !shipped.iter().any(|m| m.version == **v))
            .map(|(v, (name, _))| (*v, format!("{v:04}_{name}")))
            .collect();
        unknown.sort();
        let names: Vec<String> = shipped_functions.iter().map(|f| f.name.clone()).collect();
        let mut recorded: Vec<(String, Option<String>, bool)> = Vec::new();
        for f in self.db.function_list(None, &names).await? {
            recorded.push((f.name, f.checksum, f.present));
        }
        let function = |name: &str| recorded.iter().find(|(n, _, _)| n == name);
        let mut missing: Vec<String> =
            shipped.iter().filter(|m| !applied.contains_key(&m.version)).map(|m| m.label()).collect();
        missing.extend(
            shipped_functions
                .iter()
                .filter(|f| !matches!(function(&f.name), Some((_, Some(_), true))))
                .map(|f| f.label()),
        );
        let mut modified: Vec<String> = shipped
            .iter()
            .filter(|m| applied.get(&m.version).is_some_and(|(_, sum)| *sum != m.checksum()))
            .map(|m| m.label())
            .collect();
        modified.extend(
            shipped_functions
                .iter()
                .filter(|f| matches!(function(&f.name), Some((_, Some(sum), true)) if *sum != f.checksum()))
                .map(|f| f.label()),
        );
        let mut unknown: Vec<String> = unknown.into_iter().map(|(_, l)| l).collect();
        unknown.extend(
            recorded.iter().filter(|(n, _, _)| !names.contains(n)).map(|(n, _, _)| format!("function {n}")),
        );
        Ok(VerifyReport {
            schema,
            installed: true,
            current_version: applied.keys().copied().max().unwrap_or(0),
            latest_version: latest,
            missing,
            modified,
            unknown,
        })
    }

    /// Create queue `name` with the default settings; QueueExists when it is taken.
    pub async fn create_queue(&self, name: &str) -> Result<QueueInfo> {
        self.create_queue_with(name, &QueueOptions::default()).await
    }

    /// Create queue `name` with `options`.
    pub async fn create_queue_with(&self, name: &str, options: &QueueOptions) -> Result<QueueInfo> {
        validate_queue_name(name)?;
        positive_secs(options.visibility_timeout, "visibility_timeout")?;
        if options.max_attempts < 1 {
            return Err(Error::invalid(format!(
                "max_attempts must be an int >= 1, got {}",
                options.max_attempts
            )));
        }
        check_limit(options.concurrency_limit, "concurrency_limit")?;
        check_limit(options.group_concurrency, "group_concurrency")?;
        if let Some(rate) = &options.rate_limit {
            rate.check()?;
        }
        if let Some(keep) = options.archive_retention {
            positive_secs(keep, "archive_retention")?;
        }
        let created = self
            .db
            .queue_create(
                name,
                options.visibility_timeout,
                options.max_attempts,
                options.concurrency_limit,
                options.group_concurrency,
                options.rate_limit,
            )
            .await?;
        if created.is_none() && !options.exist_ok {
            return Err(Error::new(
                ErrorKind::QueueExists,
                format!("queue {name:?} already exists (set QueueOptions::exist_ok to reuse it)"),
            ));
        }
        if options.archive_retention.is_some() {
            // A second statement (queue_create keeps its signature): idempotent.
            self.set_archive_retention(name, options.archive_retention).await?;
        }
        match created {
            Some(queue) => Ok(queue),
            None => self.get_queue(name).await,
        }
    }

    /// Keep queue `name`'s archived messages for `retention` (None: for ever).
    /// Running workers enforce it: batched deletes (`archive_prune`), one
    /// worker at a time per queue.
    pub async fn set_archive_retention(&self, name: &str, retention: Option<Duration>) -> Result<()> {
        validate_queue_name(name)?;
        let secs = retention.map(|d| positive_secs(d, "archive_retention")).transpose()?;
        if !self.db.queue_set_archive_retention(name, secs).await? {
            return Err(Error::queue_not_found(name));
        }
        Ok(())
    }

    /// Cancel message `id`: [`CancelOutcome::Cancelled`] (it was waiting or
    /// delayed: archived now as `cancelled`) or [`CancelOutcome::CancelRequested`]
    /// (it is running: its worker stops the handler and archives it as
    /// `cancelled`). `AlreadyArchived` (naming its status) when it already
    /// ended; `MessageNotFound` for an unknown id.
    pub async fn cancel(&self, id: i64) -> Result<CancelOutcome> {
        let outcome = self.cancel_batch(&[id]).await?.remove(&id).unwrap_or(CancelOutcome::NotFound);
        match outcome {
            CancelOutcome::NotFound => {
                Err(Error::new(ErrorKind::MessageNotFound, format!("no message {id}: nothing to cancel")))
            }
            CancelOutcome::Archived(status) => Err(Error::new(
                ErrorKind::AlreadyArchived,
                format!("message {id} is already archived with status {status:?}: nothing to cancel"),
            )),
            other => Ok(other),
        }
    }

    /// Cancel messages `ids` in one statement: what happened to each (never an
    /// error for one id's state).
    pub async fn cancel_batch(&self, ids: &[i64]) -> Result<HashMap<i64, CancelOutcome>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        batch_size(ids.len(), "number of ids")?;
        if let Some(bad) = ids.iter().find(|i| **i < 1) {
            return Err(Error::invalid(format!(
                "message id must be a positive int (a message's id), got {bad}"
            )));
        }
        let rows = self.db.message_cancel(ids).await?;
        Ok(rows
            .into_iter()
            .map(|(id, outcome, status)| {
                let o = match outcome.as_str() {
                    "cancelled" => CancelOutcome::Cancelled,
                    "cancel_requested" => CancelOutcome::CancelRequested,
                    "archived" => CancelOutcome::Archived(status.unwrap_or_default()),
                    _ => CancelOutcome::NotFound,
                };
                (id, o)
            })
            .collect())
    }

    /// Wait until message `id` is archived and return its archived row
    /// (status, result or error, progress); woken by NOTIFY, with a poll
    /// behind it (works through pgBouncer in transaction mode too).
    /// `WaitTimeout` after `timeout` (None: wait for ever). Holds one
    /// connection of its own while it waits.
    pub async fn wait(&self, id: i64, timeout: Option<Duration>) -> Result<ArchivedMessage> {
        crate::wait::wait_archived(&self.db, &self.db.config, id, timeout).await
    }

    /// Change queue `name`'s flow-control limits (only those set in `change`;
    /// `Some(None)` removes one) and return its settings. Takes effect at the
    /// next dequeue; messages already leased count against a new limit.
    pub async fn update_queue(&self, name: &str, change: &QueueUpdate) -> Result<QueueInfo> {
        validate_queue_name(name)?;
        check_limit(change.concurrency_limit.flatten(), "concurrency_limit")?;
        check_limit(change.group_concurrency.flatten(), "group_concurrency")?;
        if let Some(Some(rate)) = &change.rate_limit {
            rate.check()?;
        }
        self.db.queue_update(name, change).await?.ok_or_else(|| Error::queue_not_found(name))
    }

    /// The queue named `name`.
    pub async fn get_queue(&self, name: &str) -> Result<QueueInfo> {
        validate_queue_name(name)?;
        self.db.queue_get(name).await?.ok_or_else(|| Error::queue_not_found(name))
    }

    /// Delete a queue with its waiting and in-flight messages (its archive stays).
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        if !self.db.queue_delete(name).await? {
            return Err(Error::queue_not_found(name));
        }
        Ok(())
    }

    /// Delete every waiting, delayed and in-flight message; return how many.
    pub async fn purge_queue(&self, name: &str) -> Result<i64> {
        validate_queue_name(name)?;
        self.db.queue_purge(name).await?.ok_or_else(|| Error::queue_not_found(name))
    }

    /// Every queue, by name.
    pub async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        self.db.queue_list().await
    }

    /// Counts of ready, in-flight, delayed and archived messages.
    pub async fn queue_stats(&self, name: &str) -> Result<QueueStats> {
        validate_queue_name(name)?;
        self.db.queue_stats(name).await?.ok_or_else(|| Error::queue_not_found(name))
    }

    /// Stop deliveries from `name` (enqueues still work) until `resume_queue`.
    pub async fn pause_queue(&self, name: &str) -> Result<()> {
        self.set_paused(name, true).await
    }

    /// Deliver from `name` again.
    pub async fn resume_queue(&self, name: &str) -> Result<()> {
        self.set_paused(name, false).await
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<()> {
        validate_queue_name(name)?;
        if !self.db.queue_set_paused(name, paused).await? {
            return Err(Error::queue_not_found(name));
        }
        Ok(())
    }

    /// Create a schedule (docs/schedules.md); ScheduleExists when its name is
    /// taken (a worker's `schedule` declaration replaces instead). Running
    /// workers that run schedules fire it.
    pub async fn create_schedule(&self, schedule: &Schedule) -> Result<ScheduleInfo> {
        let spec = schedule.spec(self.config().max_payload_bytes())?;
        match self.db.schedule_upsert(&spec, false).await? {
            Some((info, _)) => Ok(info),
            None => Err(Error::new(
                ErrorKind::ScheduleExists,
                format!("schedule {:?} already exists (delete_schedule first to change it)", spec.name),
            )),
        }
    }

    /// Every schedule, by name, with its next and last slot.
    pub async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        self.db.schedule_list().await
    }

    /// Delete a schedule (the messages it enqueued stay).
    pub async fn delete_schedule(&self, name: &str) -> Result<()> {
        valid_schedule_name(name)?;
        if !self.db.schedule_delete(name).await? {
            return Err(schedule_not_found(name));
        }
        Ok(())
    }

    /// Pause (`paused` true) or resume (false) a schedule; resuming starts at
    /// its first slot after now.
    pub async fn pause_schedule(&self, name: &str, paused: bool) -> Result<()> {
        valid_schedule_name(name)?;
        if !self.db.schedule_set_paused(name, paused).await? {
            return Err(schedule_not_found(name));
        }
        Ok(())
    }

    /// Resume a paused schedule (`pause_schedule(name, false)`).
    pub async fn resume_schedule(&self, name: &str) -> Result<()> {
        self.pause_schedule(name, false).await
    }

    /// Messages in delivery order with their state (ready, in_flight or
    /// delayed), without leasing them.
    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<(Message, String)>> {
        validate_queue_name(queue)?;
        let limit = batch_size(limit, "limit")?;
        self.db.message_peek(queue, limit).await
    }

    /// Archived messages, newest first, optionally of one queue and status.
    pub async fn list_archive(
        &self,
        queue: Option<&str>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ArchivedMessage>> {
        if let Some(q) = queue {
            validate_queue_name(q)?;
        }
        if let Some(s) = status {
            validate_status(s)?;
        }
        let limit = batch_size(limit, "limit")?;
        self.db.archive_list(queue, status, limit).await
    }

    /// Delete archived messages archived more than `older_than` ago; return how many.
    pub async fn purge_archive(
        &self,
        older_than: Duration,
        queue: Option<&str>,
        status: Option<&str>,
    ) -> Result<i64> {
        if let Some(q) = queue {
            validate_queue_name(q)?;
        }
        if let Some(s) = status {
            validate_status(s)?;
        }
        self.db.archive_purge(older_than, queue, status).await
    }

    /// Put archived messages with `status` (usually "dead") back on `queue`,
    /// all of them or only `ids`; return the ids put back.
    pub async fn redrive(&self, queue: &str, status: &str, ids: Option<&[i64]>) -> Result<Vec<i64>> {
        validate_status(status)?;
        self.get_queue(queue).await?;
        let mut out = self.db.archive_redrive(queue, status, ids).await?;
        out.sort_unstable();
        Ok(out)
    }

    /// Every known worker, newest first.
    pub async fn list_workers(&self) -> Result<Vec<WorkerInfo>> {
        self.db.worker_list().await
    }

    /// Give the existing role `role` least privileges on this schema (Python's
    /// `Admin.grant`); return the GRANT statements run, in one transaction.
    ///
    /// A role acts only through pgqrs's server functions: USAGE on the
    /// schema and EXECUTE on the functions of its job, never a privilege on
    /// a table (admin and read-only may also read the migration ledgers, for
    /// `verify`). See [`Grants`] for the kinds; idempotent. InvalidArgument
    /// when the role does not exist or no kind is asked for.
    pub async fn grant(&self, role: &str, kinds: Grants) -> Result<Vec<String>> {
        if role.is_empty() || role.contains('\0') {
            return Err(Error::invalid(format!("role must be a non-empty string without NUL, got {role:?}")));
        }
        if role.len() > MAX_ROLE_NAME_BYTES {
            return Err(Error::invalid(format!(
                "role {role:?} is {} bytes; PostgreSQL role names have at most {MAX_ROLE_NAME_BYTES}",
                role.len()
            )));
        }
        if kinds == Grants::default() {
            return Err(Error::invalid(
                "nothing to grant: set producer, consumer, admin and/or read_only in Grants",
            ));
        }
        let mut client = self.db.conn().await?;
        let tx = client.transaction().await.map_err(|e| self.db.translate(e))?;
        let statements =
            self.db.role_grant(tokio_postgres::GenericClient::client(&*tx), role, &kinds).await?;
        if statements.is_empty() {
            return Err(Error::invalid(format!(
                "role {role:?} does not exist (create it first: CREATE ROLE ...)"
            )));
        }
        for statement in &statements {
            tx.batch_execute(statement).await.map_err(|e| self.db.translate(e))?;
        }
        tx.commit().await.map_err(|e| self.db.translate(e))?;
        Ok(statements)
    }

    /// Mark workers silent for `dead_after` as dead and prune rows older than
    /// `prune_after`; return (marked dead, pruned). Leases need no reaping.
    pub async fn reap_workers(&self, dead_after: Duration, prune_after: Duration) -> Result<(i64, i64)> {
        self.db.worker_reap(dead_after, prune_after).await
    }
}

fn schedule_not_found(name: &str) -> Error {
    Error::new(
        ErrorKind::ScheduleNotFound,
        format!("schedule {name:?} does not exist (see Admin::list_schedules)"),
    )
}
