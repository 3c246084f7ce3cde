//! Producer: put jobs on one queue.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::GenericClient;

use crate::admin::{bounded_secs, MAX_BATCH};
use crate::calls::Enqueue;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::flow::check_group;
use crate::message::Message;
use crate::payload::{encode, encode_headers};
use crate::task::{task_message, Task};
use crate::validate::validate_queue_name;

/// Longest dedup key accepted, in characters.
pub const MAX_DEDUP_KEY_LENGTH: usize = 512;

/// Options of one enqueue call (all off by default).
///
/// ```
/// use std::time::Duration;
/// let options = pgqrs::EnqueueOptions::new()
///     .delay(Duration::from_secs(60))
///     .priority(5)
///     .dedup_key("invoice-42");
/// ```
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// Keep the message invisible this long (added to `available_at` if both are set).
    pub delay: Option<Duration>,
    /// Keep the message invisible until this (database) time.
    pub available_at: Option<DateTime<Utc>>,
    /// Higher is delivered first (default 0).
    pub priority: i32,
    /// For `enqueue`: a waiting or in-flight message with this key is
    /// returned (`inserted == false`) instead of adding a new one.
    pub dedup_key: Option<String>,
    /// For `enqueue_batch`: one optional dedup key per payload.
    pub dedup_keys: Option<Vec<Option<String>>>,
    /// A JSON object stored with the message.
    pub headers: Option<Value>,
    /// The message group of every message (flow control: a queue's
    /// `group_concurrency` and per-group rate limit apply to it).
    pub group: Option<String>,
    /// For `enqueue_batch`: one optional group per payload.
    pub groups: Option<Vec<Option<String>>>,
}

impl EnqueueOptions {
    /// No delay, priority 0, no dedup key, no headers.
    pub fn new() -> Self {
        Self::default()
    }
    /// See [`EnqueueOptions::delay`](#structfield.delay).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
    /// See [`EnqueueOptions::available_at`](#structfield.available_at).
    pub fn available_at(mut self, at: DateTime<Utc>) -> Self {
        self.available_at = Some(at);
        self
    }
    /// See [`EnqueueOptions::priority`](#structfield.priority).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
    /// See [`EnqueueOptions::dedup_key`](#structfield.dedup_key).
    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }
    /// See [`EnqueueOptions::dedup_keys`](#structfield.dedup_keys).
    pub fn dedup_keys(mut self, keys: Vec<Option<String>>) -> Self {
        self.dedup_keys = Some(keys);
        self
    }
    /// See [`EnqueueOptions::headers`](#structfield.headers).
    pub fn headers(mut self, headers: Value) -> Self {
        self.headers = Some(headers);
        self
    }
    /// See [`EnqueueOptions::group`](#structfield.group).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
    /// See [`EnqueueOptions::groups`](#structfield.groups).
    pub fn groups(mut self, groups: Vec<Option<String>>) -> Self {
        self.groups = Some(groups);
        self
    }
}

/// Enqueues messages on one queue; every call is one statement.
#[derive(Clone)]
pub struct Producer {
    db: Db,
    queue: String,
}

impl Producer {
    /// A Producer for `queue` (connects now; the queue is checked on enqueue).
    pub async fn new(config: &Config, queue: &str) -> Result<Producer> {
        validate_queue_name(queue)?;
        Ok(Producer { db: Db::open(config, None).await?, queue: queue.to_string() })
    }

    /// A Producer on a pool shared with other clients.
    pub async fn with_pool(config: &Config, queue: &str, pool: Pool) -> Result<Producer> {
        validate_queue_name(queue)?;
        Ok(Producer { db: Db::open(config, Some(pool)).await?, queue: queue.to_string() })
    }

    /// The queue this Producer writes to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Enqueue one message and return it. Any `Serialize` value works as the
    /// payload (a `serde_json::Value`, a struct, a map...). A `&str` is a JSON
    /// string (Python takes a `str` as JSON text: parse such text with
    /// `serde_json::from_str` first).
    pub async fn enqueue<T: Serialize + ?Sized>(&self, payload: &T) -> Result<Message> {
        self.enqueue_with(payload, &EnqueueOptions::default()).await
    }

    /// Enqueue one message with `options` (delay, priority, dedup key, headers).
    pub async fn enqueue_with<T: Serialize + ?Sized>(
        &self,
        payload: &T,
        options: &EnqueueOptions,
    ) -> Result<Message> {
        let params = self.single(payload, options)?;
        let rows = self.run(params, None::<&tokio_postgres::Client>).await?;
        first(rows)
    }

    /// Enqueue one message on the caller's connection or transaction: it
    /// commits or rolls back with the caller's own writes.
    ///
    /// ```no_run
    /// # async fn f(producer: pgqrs::Producer, client: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let tx = client.transaction().await?;
    /// tx.execute("UPDATE accounts SET state = 'billing' WHERE id = 1", &[]).await?;
    /// producer.enqueue_in(&tx, &serde_json::json!({"bill": 1}), &Default::default()).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_in<C: GenericClient, T: Serialize + ?Sized>(
        &self,
        client: &C,
        payload: &T,
        options: &EnqueueOptions,
    ) -> Result<Message> {
        let params = self.single(payload, options)?;
        first(self.run(params, Some(client)).await?)
    }

    /// Enqueue task `args` (its [`Task::options`]): a message on this queue
    /// with header `pgqrs-task` = [`Task::NAME`] and the arguments' fields as
    /// the payload (see [`crate::task`]). This Producer's queue must be
    /// [`Task::QUEUE`].
    pub async fn enqueue_task<T: Task>(&self, args: &T) -> Result<Message> {
        self.enqueue_task_with(args, &args.options()).await
    }

    /// [`Producer::enqueue_task`] with `options` instead of the task's own.
    pub async fn enqueue_task_with<T: Task>(&self, args: &T, options: &EnqueueOptions) -> Result<Message> {
        let (payload, options) = task_message(args, options, &self.queue)?;
        self.enqueue_with(&payload, &options).await
    }

    /// [`Producer::enqueue_task_with`] on the caller's connection or transaction.
    pub async fn enqueue_task_in<C: GenericClient, T: Task>(
        &self,
        client: &C,
        args: &T,
        options: &EnqueueOptions,
    ) -> Result<Message> {
        let (payload, options) = task_message(args, options, &self.queue)?;
        self.enqueue_in(client, &payload, &options).await
    }

    /// Enqueue many messages in one statement; results follow input order.
    pub async fn enqueue_batch<T: Serialize>(&self, payloads: &[T]) -> Result<Vec<Message>> {
        self.enqueue_batch_with(payloads, &EnqueueOptions::default()).await
    }

    /// Enqueue many messages sharing `options` (with `dedup_keys`, one per payload).
    pub async fn enqueue_batch_with<T: Serialize>(
        &self,
        payloads: &[T],
        options: &EnqueueOptions,
    ) -> Result<Vec<Message>> {
        let params = self.batch(payloads, options)?;
        self.run(params, None::<&tokio_postgres::Client>).await
    }

    /// Like [`Producer::enqueue_batch_with`], on the caller's connection or transaction.
    pub async fn enqueue_batch_in<C: GenericClient, T: Serialize>(
        &self,
        client: &C,
        payloads: &[T],
        options: &EnqueueOptions,
    ) -> Result<Vec<Message>> {
        let params = self.batch(payloads, options)?;
        self.run(params, Some(client)).await
    }

    fn single<T: Serialize + ?Sized>(&self, payload: &T, options: &EnqueueOptions) -> Result<Enqueue> {
        if options.dedup_keys.is_some() {
            return Err(Error::invalid(
                "dedup_keys is for enqueue_batch; use EnqueueOptions::dedup_key for one message",
            ));
        }
        let max = self.db.config.max_payload_bytes();
        self.params(vec![encode(payload, "payload", max)?], vec![options.dedup_key.clone()], options)
    }

    fn batch<T: Serialize>(&self, payloads: &[T], options: &EnqueueOptions) -> Result<Enqueue> {
        if options.dedup_key.is_some() {
            return Err(Error::invalid(
                "dedup_key is for enqueue; use EnqueueOptions::dedup_keys (one per payload) for a batch",
            ));
        }
        let n = payloads.len();
        if n == 0 {
            return Err(Error::invalid("nothing to enqueue: the payload list is empty"));
        }
        if n > MAX_BATCH {
            return Err(Error::invalid(format!("enqueue_batch takes at most {MAX_BATCH} payloads, got {n}")));
        }
        let keys = match &options.dedup_keys {
            None => vec![None; n],
            Some(keys) if keys.len() == n => keys.clone(),
            Some(keys) => {
                return Err(Error::invalid(format!("dedup_keys has {} entries for {n} payloads", keys.len())))
            }
        };
        let max = self.db.config.max_payload_bytes();
        let texts = payloads.iter().map(|p| encode(p, "payload", max)).collect::<Result<Vec<_>>>()?;
        self.params(texts, keys, options)
    }

    fn params(
        &self,
        payloads: Vec<String>,
        keys: Vec<Option<String>>,
        options: &EnqueueOptions,
    ) -> Result<Enqueue> {
        let n = payloads.len();
        let groups = match (&options.group, &options.groups) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("set group (one for all) or groups (one per payload), not both"))
            }
            (None, Some(groups)) if groups.len() != n => {
                return Err(Error::invalid(format!("groups has {} entries for {n} payloads", groups.len())))
            }
            (None, Some(groups)) => groups.clone(),
            (group, None) => vec![group.clone(); n],
        };
        for group in groups.iter().flatten() {
            check_group(group)?;
        }
        let mut seen = HashSet::new();
        for key in keys.iter().flatten() {
            if key.is_empty() || key.contains('\0') || key.chars().count() > MAX_DEDUP_KEY_LENGTH {
                return Err(Error::invalid(format!(
                    "dedup_key must be a non-empty string of at most {MAX_DEDUP_KEY_LENGTH} \
                     characters without NUL, got {key:?}"
                )));
            }
            if !seen.insert(key) {
                return Err(Error::invalid(format!("dedup_key {key:?} appears twice in one batch")));
            }
        }
        let headers = encode_headers(options.headers.as_ref(), self.db.config.max_payload_bytes())?;
        Ok(Enqueue {
            queue: self.queue.clone(),
            payloads,
            priorities: vec![options.priority; n],
            delays: vec![options.delay.map(|d| bounded_secs(d, "delay")).transpose()?; n],
            available_at: vec![options.available_at; n],
            dedup_keys: keys,
            headers: vec![headers; n],
            groups,
        })
    }

    /// Send the statement with `send`, traced (feature `tracing`): see src/telemetry.rs.
    #[cfg(feature = "tracing")]
    async fn traced<Fut>(&self, mut p: Enqueue, send: impl FnOnce(Enqueue) -> Fut) -> Result<Vec<Message>>
    where
        Fut: std::future::Future<Output = Result<Vec<Message>>>,
    {
        use tracing::Instrument;
        let max = self.db.config.max_payload_bytes();
        let publish = crate::telemetry::Publish::start(&self.queue, &mut p.headers, max)?;
        let result = send(p).instrument(publish.send.clone()).await;
        publish.finish(&result);
        result
    }

    #[cfg(not(feature = "tracing"))]
    async fn traced<Fut>(&self, p: Enqueue, send: impl FnOnce(Enqueue) -> Fut) -> Result<Vec<Message>>
    where
        Fut: std::future::Future<Output = Result<Vec<Message>>>,
    {
        send(p).await
    }

    async fn run<C: GenericClient>(&self, p: Enqueue, client: Option<&C>) -> Result<Vec<Message>> {
        self.traced(
            p,
            |p| async move { self.db.message_enqueue(client.map(GenericClient::client), &p).await },
        )
        .await
        .map(|ms| self.owned(ms))
    }

    /// The enqueued messages, each able to [`Message::wait`] through this producer's pool.
    fn owned(&self, mut messages: Vec<Message>) -> Vec<Message> {
        for m in &mut messages {
            m.owner = crate::message::Owner(Some(self.db.clone()));
        }
        messages
    }

    /// Send the statement on an sqlx executor.
    #[cfg(feature = "sqlx")]
    async fn run_sqlx<'c, E>(&self, p: Enqueue, executor: E) -> Result<Vec<Message>>
    where
        E: sqlx::PgExecutor<'c>,
    {
        self.traced(p, |p| async move { self.db.message_enqueue_sqlx(executor, &p).await })
            .await
            .map(|ms| self.owned(ms))
    }
}

#[cfg(feature = "sqlx")]
impl Producer {
    /// Enqueue one message on an sqlx connection or transaction (feature
    /// `sqlx`): it commits or rolls back with the caller's own writes. The
    /// statement is the same `message_enqueue` call as [`Producer::enqueue_in`]'s,
    /// sent unprepared (no statement left on the connection, as pgqrs's own).
    ///
    /// ```no_run
    /// # async fn f(producer: pgqrs::Producer, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("UPDATE accounts SET state = 'billing' WHERE id = 1").execute(&mut *tx).await?;
    /// producer.enqueue_sqlx(&mut *tx, &serde_json::json!({"bill": 1}), &Default::default()).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_sqlx<'c, E, T>(
        &self,
        executor: E,
        payload: &T,
        options: &EnqueueOptions,
    ) -> Result<Message>
    where
        E: sqlx::PgExecutor<'c>,
        T: Serialize + ?Sized,
    {
        let params = self.single(payload, options)?;
        first(self.run_sqlx(params, executor).await?)
    }

    /// Like [`Producer::enqueue_batch_with`], on an sqlx connection or transaction.
    pub async fn enqueue_batch_sqlx<'c, E, T>(
        &self,
        executor: E,
        payloads: &[T],
        options: &EnqueueOptions,
    ) -> Result<Vec<Message>>
    where
        E: sqlx::PgExecutor<'c>,
        T: Serialize,
    {
        let params = self.batch(payloads, options)?;
        self.run_sqlx(params, executor).await
    }

    /// Like [`Producer::enqueue_task_with`], on an sqlx connection or transaction.
    pub async fn enqueue_task_sqlx<'c, E, T>(
        &self,
        executor: E,
        args: &T,
        options: &EnqueueOptions,
    ) -> Result<Message>
    where
        E: sqlx::PgExecutor<'c>,
        T: Task,
    {
        let (payload, options) = task_message(args, options, &self.queue)?;
        self.enqueue_sqlx(executor, &payload, &options).await
    }
}

fn first(rows: Vec<Message>) -> Result<Message> {
    rows.into_iter().next().ok_or_else(|| Error::new(crate::ErrorKind::Database, "enqueue returned no row"))
}
