//! Admin: install the schema, manage queues, inspect and maintain the archive.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::types::Type;

use crate::config::{Config, DEFAULT_MAX_ATTEMPTS, DEFAULT_VISIBILITY_TIMEOUT};
use crate::db::{col, Db};
use crate::error::{Error, ErrorKind, Result};
use crate::message::{ArchivedMessage, Message, QueueInfo, QueueStats, VerifyReport, WorkerInfo};
use crate::queries::{functions, migrations, render, Query, SCHEMA_BOOTSTRAP, UNINSTALL};
use crate::validate::{validate_queue_name, validate_status};

/// Most messages one dequeue or batch call may touch: keeps a statement's
/// parameters and locks bounded.
pub const MAX_BATCH: usize = 10_000;
/// Time without a heartbeat after which `reap_workers` marks a worker dead.
pub const DEFAULT_WORKER_DEAD_AFTER: Duration = Duration::from_secs(60);
/// Time after which stopped and dead worker rows are pruned.
pub const DEFAULT_WORKER_PRUNE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Settings of a new queue, for [`Admin::create_queue_with`].
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// How long a dequeued message stays invisible (default [`DEFAULT_VISIBILITY_TIMEOUT`]).
    pub visibility_timeout: Duration,
    /// Deliveries before a message goes to the archive as dead (default [`DEFAULT_MAX_ATTEMPTS`]).
    pub max_attempts: i32,
    /// Return the existing queue instead of a QueueExists error.
    pub exist_ok: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            exist_ok: false,
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
        let mut applied = Vec::new();
        self.db.fetch_on(&*tx, Query::MigrationLock, &[], None).await?;
        tx.batch_execute(&render(SCHEMA_BOOTSTRAP, &schema)?).await.map_err(|e| self.db.translate(e))?;
        let done: Vec<i32> = self
            .db
            .fetch_on(&*tx, Query::MigrationList, &[], None)
            .await?
            .iter()
            .map(|r| col(r, "version"))
            .collect::<Result<_>>()?;
        for m in migrations()? {
            if done.contains(&m.version) {
                continue;
            }
            tx.batch_execute(&render(m.text, &schema)?).await.map_err(|e| self.db.translate(e))?;
            let checksum = m.checksum();
            self.db
                .fetch_on(
                    &*tx,
                    Query::MigrationRecord,
                    &[(&m.version, Type::INT4), (&m.name, Type::TEXT), (&checksum, Type::TEXT)],
                    None,
                )
                .await?;
            applied.push(m.label());
        }
        let shipped = functions()?;
        let names: Vec<String> = shipped.iter().map(|f| f.name.clone()).collect();
        let mut recorded: HashMap<String, (Option<String>, bool)> = HashMap::new();
        for r in self.db.fetch_on(&*tx, Query::FunctionList, &[(&names, Type::TEXT_ARRAY)], None).await? {
            recorded.insert(col(&r, "name")?, (col(&r, "checksum")?, col(&r, "present")?));
        }
        for f in &shipped {
            let checksum = f.checksum();
            if let Some((Some(sum), true)) = recorded.get(&f.name) {
                if *sum == checksum {
                    continue;
                }
            }
            tx.batch_execute(&render(f.text, &schema)?).await.map_err(|e| self.db.translate(e))?;
            let rows = self
                .db
                .fetch_on(
                    &*tx,
                    Query::FunctionRecord,
                    &[(&f.name, Type::TEXT), (&checksum, Type::TEXT)],
                    None,
                )
                .await?;
            let overloads: i64 = col(&rows[0], "overloads")?;
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

    /// Drop every pgqrs table (and the schema, when nothing else is in it).
    pub async fn uninstall(&self) -> Result<()> {
        let mut client = self.db.conn().await?;
        let tx = client.transaction().await.map_err(|e| self.db.translate(e))?;
        self.db.fetch_on(&*tx, Query::MigrationLock, &[], None).await?;
        tx.batch_execute(&render(UNINSTALL, self.db.config.schema())?)
            .await
            .map_err(|e| self.db.translate(e))?;
        tx.commit().await.map_err(|e| self.db.translate(e))
    }

    /// Compare the database's ledgers with the migrations and functions shipped here.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let shipped = migrations()?;
        let shipped_functions = functions()?;
        let latest = shipped.iter().map(|m| m.version).max().unwrap_or(0);
        let schema = self.db.config.schema().to_string();
        let rows = self.db.fetch(Query::MigrationInstalled, &[], None).await?;
        let installed: bool = match rows.first() {
            Some(r) => col(r, "installed")?,
            None => false,
        };
        if !installed {
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
        for r in self.db.fetch(Query::MigrationList, &[], None).await? {
            applied.insert(col(&r, "version")?, (col(&r, "name")?, col(&r, "checksum")?));
        }
        let mut unknown: Vec<(i32, String)> = applied
            .iter()
            .filter(|(v, _)| !shipped.iter().any(|m| m.version == **v))
            .map(|(v, (name, _))| (*v, format!("{v:04}_{name}")))
            .collect();
        unknown.sort();
        let names: Vec<String> = shipped_functions.iter().map(|f| f.name.clone()).collect();
        let mut recorded: Vec<(String, Option<String>, bool)> = Vec::new();
        for r in self.db.fetch(Query::FunctionList, &[(&names, Type::TEXT_ARRAY)], None).await? {
            recorded.push((col(&r, "name")?, col(&r, "checksum")?, col(&r, "present")?));
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
        let vt = positive_secs(options.visibility_timeout, "visibility_timeout")?;
        if options.max_attempts < 1 {
            return Err(Error::invalid(format!(
                "max_attempts must be an int >= 1, got {}",
                options.max_attempts
            )));
        }
        let name_s = name.to_string();
        let rows = self
            .db
            .fetch(
                Query::QueueCreate,
                &[(&name_s, Type::TEXT), (&vt, Type::FLOAT8), (&options.max_attempts, Type::INT4)],
                Some(name),
            )
            .await?;
        if let Some(row) = rows.first() {
            return QueueInfo::from_row(row);
        }
        if !options.exist_ok {
            return Err(Error::new(
                ErrorKind::QueueExists,
                format!("queue {name:?} already exists (set QueueOptions::exist_ok to reuse it)"),
            ));
        }
        self.get_queue(name).await
    }

    /// The queue named `name`.
    pub async fn get_queue(&self, name: &str) -> Result<QueueInfo> {
        let rows = self.by_name(Query::QueueGet, name).await?;
        QueueInfo::from_row(rows.first().ok_or_else(|| Error::queue_not_found(name))?)
    }

    /// Delete a queue with its waiting and in-flight messages (its archive stays).
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        if self.by_name(Query::QueueDelete, name).await?.is_empty() {
            return Err(Error::queue_not_found(name));
        }
        Ok(())
    }

    /// Delete every waiting, delayed and in-flight message; return how many.
    pub async fn purge_queue(&self, name: &str) -> Result<i64> {
        let rows = self.by_name(Query::QueuePurge, name).await?;
        col(rows.first().ok_or_else(|| Error::queue_not_found(name))?, "purged")
    }

    /// Every queue, by name.
    pub async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        let rows = self.db.fetch(Query::QueueList, &[], None).await?;
        rows.iter().map(QueueInfo::from_row).collect()
    }

    /// Counts of ready, in-flight, delayed and archived messages.
    pub async fn queue_stats(&self, name: &str) -> Result<QueueStats> {
        let rows = self.by_name(Query::QueueStats, name).await?;
        QueueStats::from_row(rows.first().ok_or_else(|| Error::queue_not_found(name))?)
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
        let name_s = name.to_string();
        let rows = self
            .db
            .fetch(Query::QueueSetPaused, &[(&name_s, Type::TEXT), (&paused, Type::BOOL)], Some(name))
            .await?;
        if rows.is_empty() {
            return Err(Error::queue_not_found(name));
        }
        Ok(())
    }

    async fn by_name(&self, q: Query, name: &str) -> Result<Vec<tokio_postgres::Row>> {
        validate_queue_name(name)?;
        let name_s = name.to_string();
        self.db.fetch(q, &[(&name_s, Type::TEXT)], Some(name)).await
    }

    /// Messages in delivery order with their state (ready, in_flight or
    /// delayed), without leasing them.
    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<(Message, String)>> {
        validate_queue_name(queue)?;
        let limit = batch_size(limit, "limit")?;
        let queue_s = queue.to_string();
        let rows = self
            .db
            .fetch(Query::MessagePeek, &[(&queue_s, Type::TEXT), (&limit, Type::INT8)], Some(queue))
            .await?;
        rows.iter().map(|r| Ok((Message::from_row(r)?, col(r, "state")?))).collect()
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
        let rows = self
            .db
            .fetch(
                Query::ArchiveList,
                &[(&queue, Type::TEXT), (&status, Type::TEXT), (&limit, Type::INT8)],
                None,
            )
            .await?;
        rows.iter().map(ArchivedMessage::from_row).collect()
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
        let age = older_than.as_secs_f64();
        let rows = self
            .db
            .fetch(
                Query::ArchivePurge,
                &[(&age, Type::FLOAT8), (&queue, Type::TEXT), (&status, Type::TEXT)],
                None,
            )
            .await?;
        col(&rows[0], "purged")
    }

    /// Put archived messages with `status` (usually "dead") back on `queue`,
    /// all of them or only `ids`; return the ids put back.
    pub async fn redrive(&self, queue: &str, status: &str, ids: Option<&[i64]>) -> Result<Vec<i64>> {
        validate_status(status)?;
        self.get_queue(queue).await?;
        let ids: Option<Vec<i64>> = ids.map(<[i64]>::to_vec);
        let (queue_s, status_s) = (queue.to_string(), status.to_string());
        let rows = self
            .db
            .fetch(
                Query::ArchiveRedrive,
                &[(&queue_s, Type::TEXT), (&status_s, Type::TEXT), (&ids, Type::INT8_ARRAY)],
                Some(queue),
            )
            .await?;
        let mut out: Vec<i64> = rows.iter().map(|r| col(r, "id")).collect::<Result<_>>()?;
        out.sort_unstable();
        Ok(out)
    }

    /// Every known worker, newest first.
    pub async fn list_workers(&self) -> Result<Vec<WorkerInfo>> {
        let rows = self.db.fetch(Query::WorkerList, &[], None).await?;
        rows.iter().map(WorkerInfo::from_row).collect()
    }

    /// Mark workers silent for `dead_after` as dead and prune rows older than
    /// `prune_after`; return (marked dead, pruned). Leases need no reaping.
    pub async fn reap_workers(&self, dead_after: Duration, prune_after: Duration) -> Result<(i64, i64)> {
        let (d, p) = (dead_after.as_secs_f64(), prune_after.as_secs_f64());
        let rows = self.db.fetch(Query::WorkerReap, &[(&d, Type::FLOAT8), (&p, Type::FLOAT8)], None).await?;
        Ok((col(&rows[0], "marked_dead")?, col(&rows[0], "pruned")?))
    }
}
