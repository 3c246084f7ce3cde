//! Consumer: lease jobs from one queue and settle them, fenced by lease.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::Value;
use uuid::Uuid;

use crate::admin::{batch_size, bounded_secs, positive_secs, MAX_BATCH};
use crate::calls::{Fence, Fenced};
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, ErrorKind, Result};
use crate::message::{Message, Undecodable};
use crate::payload::encode;
use crate::validate::{validate_queue_name, validate_status};

/// Leases a Consumer remembers at most; the oldest are forgotten first
/// (passing the Message itself always works).
pub const MAX_REMEMBERED_LEASES: usize = 100_000;

/// A message to settle: a [`Message`] (it carries its lease), or the id of
/// one this Consumer dequeued (its lease is remembered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRef {
    /// An id; the lease is the one this Consumer remembers from dequeue.
    Id(i64),
    /// An id with the lease it was dequeued under (None: never leased).
    Leased { id: i64, lease: Option<Uuid> },
}

impl MessageRef {
    /// A message dequeued elsewhere (e.g. by another process), named by id and lease.
    pub fn with_lease(id: i64, lease: Uuid) -> MessageRef {
        MessageRef::Leased { id, lease: Some(lease) }
    }

    /// The message id.
    pub fn id(&self) -> i64 {
        match *self {
            MessageRef::Id(id) | MessageRef::Leased { id, .. } => id,
        }
    }
}

impl From<i64> for MessageRef {
    fn from(id: i64) -> Self {
        MessageRef::Id(id)
    }
}
impl From<&i64> for MessageRef {
    fn from(id: &i64) -> Self {
        MessageRef::Id(*id)
    }
}
impl From<&Message> for MessageRef {
    fn from(m: &Message) -> Self {
        MessageRef::Leased { id: m.id, lease: m.lease }
    }
}
impl From<Message> for MessageRef {
    fn from(m: Message) -> Self {
        MessageRef::from(&m)
    }
}

/// Messages a dequeue leased, until its caller takes them: dropped unread
/// (the caller's future was dropped meanwhile), they go back to the queue at
/// once with their attempt refunded instead of waiting for their lease to end.
struct Unclaimed {
    messages: Option<Vec<Message>>,
    db: Db,
    queue: String,
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        let Some(messages) = self.messages.take().filter(|m| !m.is_empty()) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (db, queue) = (self.db.clone(), std::mem::take(&mut self.queue));
        runtime.spawn(async move {
            let held: Vec<&Message> = messages.iter().filter(|m| m.lease.is_some()).collect();
            let ids: Vec<i64> = held.iter().map(|m| m.id).collect();
            let leases: Vec<Uuid> = held.iter().filter_map(|m| m.lease).collect();
            let n = ids.len();
            let refunds = vec![true; n];
            let given_back = db
                .message_release(
                    &ids,
                    &leases,
                    &vec![Duration::ZERO; n],
                    &vec![None; n],
                    Some(&refunds),
                    Some(&queue),
                )
                .await;
            if let Err(e) = given_back {
                log::warn!(
                    "pgqrs: a dropped dequeue leased message(s) {ids:?} of {queue:?}; giving them back \
                     failed (they come back when their lease expires): {e}"
                );
            }
        });
    }
}

/// Archive as dead, each with a `PayloadError` record saying why, the rows
/// of a dequeue this client cannot decode (written by other means than
/// pgqrs's functions, against the payload rules), so that they do not come
/// back at every lease expiry and the rest of their batch is delivered.
/// Logged; a failed write is only logged too: the rows then come back after
/// their lease, and the next dequeue tries again.
pub(crate) async fn bury_undecodable(db: &Db, queue: &str, rows: &[Undecodable], worker_id: Option<i64>) {
    let rows: Vec<&Undecodable> = rows.iter().filter(|u| u.lease.is_some()).collect();
    if rows.is_empty() {
        return;
    }
    for u in &rows {
        log::warn!(
            "pgqrs: message {} of {queue:?} cannot be read ({}); archived as dead with a PayloadError",
            u.id,
            u.reason
        );
    }
    let ids: Vec<i64> = rows.iter().map(|u| u.id).collect();
    let leases: Vec<Uuid> = rows.iter().filter_map(|u| u.lease).collect();
    let statuses = vec!["dead".to_string(); rows.len()];
    let results = vec![None; rows.len()];
    let errors: Vec<Option<String>> = rows
        .iter()
        .map(|u| {
            let record = serde_json::json!({
                "type": "pgqrs.PayloadError",
                "message": format!("the message cannot be read: {}", u.reason),
                "attempt": u.attempts,
                "worker_id": worker_id,
            });
            Some(record.to_string())
        })
        .collect();
    if let Err(e) = db.message_archive(&ids, &leases, &statuses, &results, &errors, Some(queue)).await {
        log::warn!("pgqrs: could not archive unreadable message(s) {ids:?} of {queue:?} as dead: {e}");
    }
}

/// The leases a Consumer holds, so that `archive(msg.id, ..)` works with an id alone.
#[derive(Default)]
struct Leases {
    by_id: HashMap<i64, (Uuid, u64)>,
    order: BTreeMap<u64, i64>,
    next: u64,
}

impl Leases {
    fn remember(&mut self, messages: &[Message]) {
        for m in messages {
            if let Some(lease) = m.lease {
                self.forget_one(m.id);
                self.next += 1;
                self.by_id.insert(m.id, (lease, self.next));
                self.order.insert(self.next, m.id);
            }
        }
        while self.by_id.len() > MAX_REMEMBERED_LEASES {
            let Some((_, id)) = self.order.pop_first() else { break };
            self.by_id.remove(&id);
        }
    }

    fn forget_one(&mut self, id: i64) {
        if let Some((_, seq)) = self.by_id.remove(&id) {
            self.order.remove(&seq);
        }
    }

    fn resolve(&self, refs: &[MessageRef], action: &str) -> Result<(Vec<i64>, Vec<Uuid>)> {
        let mut ids = Vec::with_capacity(refs.len());
        let mut leases = Vec::with_capacity(refs.len());
        let mut unknown = Vec::new();
        for r in refs {
            let lease = match *r {
                MessageRef::Leased { lease, .. } => lease,
                MessageRef::Id(id) => self.by_id.get(&id).map(|(l, _)| *l),
            };
            match lease {
                Some(l) => {
                    ids.push(r.id());
                    leases.push(l);
                }
                None => unknown.push(r.id()),
            }
        }
        if !unknown.is_empty() {
            return Err(Error::lease(
                ErrorKind::LeaseNotHeld,
                format!(
                    "cannot {action} message(s) {unknown:?}: this Consumer holds no lease on them; \
                     pass the Message returned by dequeue() (it carries its lease)"
                ),
                unknown,
                vec![],
            ));
        }
        if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
            return Err(Error::invalid(format!("the same message appears twice in one {action} call")));
        }
        if ids.is_empty() {
            return Err(Error::invalid(format!("nothing to {action}: the message list is empty")));
        }
        if ids.len() > MAX_BATCH {
            return Err(Error::invalid(format!(
                "{action} takes at most {MAX_BATCH} messages, got {}",
                ids.len()
            )));
        }
        Ok((ids, leases))
    }
}

/// Dequeues from one queue. A dequeued message is invisible to every other
/// consumer until its lease expires; archive, delete, extend and release only
/// work while this consumer still holds that lease (else
/// [`ErrorKind::LeaseExpired`], and the row is left untouched).
///
/// Share one Consumer between tasks by reference or `Arc`: every method takes `&self`.
pub struct Consumer {
    db: Db,
    queue: String,
    worker_id: Option<i64>,
    leases: Mutex<Leases>,
    retry_after: Mutex<Option<Duration>>,
}

impl Consumer {
    /// A Consumer for `queue` (connects now; the queue is checked on dequeue).
    pub async fn new(config: &Config, queue: &str) -> Result<Consumer> {
        Consumer::open(config, queue, None).await
    }

    /// A Consumer on a pool shared with other clients.
    pub async fn with_pool(config: &Config, queue: &str, pool: Pool) -> Result<Consumer> {
        Consumer::open(config, queue, Some(pool)).await
    }

    async fn open(config: &Config, queue: &str, pool: Option<Pool>) -> Result<Consumer> {
        validate_queue_name(queue)?;
        Ok(Consumer {
            db: Db::open(config, pool).await?,
            queue: queue.to_string(),
            worker_id: None,
            leases: Mutex::new(Leases::default()),
            retry_after: Mutex::new(None),
        })
    }

    /// Record `worker_id` as the holder of the leases this Consumer takes
    /// (shown by `Admin::list_workers`).
    pub fn with_worker_id(mut self, worker_id: Option<i64>) -> Consumer {
        self.worker_id = worker_id;
        self
    }

    /// The queue this Consumer reads.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Lease the next message; None when nothing is ready or the queue is paused.
    pub async fn dequeue(&self) -> Result<Option<Message>> {
        Ok(self.dequeue_batch_with(1, None).await?.into_iter().next())
    }

    /// Lease the next message for `visibility_timeout` instead of the
    /// queue's default. Returns at once (None when nothing is ready): the
    /// duration is how long the lease lasts, not a wait.
    pub async fn dequeue_with_visibility_timeout(
        &self,
        visibility_timeout: Duration,
    ) -> Result<Option<Message>> {
        Ok(self.dequeue_batch_with(1, Some(visibility_timeout)).await?.into_iter().next())
    }

    /// The former name of [`Consumer::dequeue_with_visibility_timeout`]: the
    /// duration sets the lease, it is no wait.
    #[deprecated(
        since = "0.1.0",
        note = "renamed dequeue_with_visibility_timeout: the duration sets the lease, it is not a wait"
    )]
    pub async fn dequeue_with_timeout(&self, visibility_timeout: Duration) -> Result<Option<Message>> {
        self.dequeue_with_visibility_timeout(visibility_timeout).await
    }

    /// Lease up to `batch` messages (empty when nothing is ready).
    pub async fn dequeue_batch(&self, batch: usize) -> Result<Vec<Message>> {
        self.dequeue_batch_with(batch, None).await
    }

    /// Lease up to `batch` messages, for `visibility_timeout` if given.
    pub async fn dequeue_batch_with(
        &self,
        batch: usize,
        visibility_timeout: Option<Duration>,
    ) -> Result<Vec<Message>> {
        let limit = batch_size(batch, "batch")?;
        if let Some(vt) = visibility_timeout {
            positive_secs(vt, "visibility_timeout")?;
        }
        // Rows already delivered max_attempts times go to the archive as dead
        // inside message_dequeue, which keeps taking rows until the batch is full.
        //
        // Cancel-safe: the round trip runs in a task of its own, so a caller
        // dropping this future (tokio::select!, timeout) does not cut it; what
        // it leased comes back in a guard that, dropped unread, gives the
        // messages back with their attempt refunded (`Unclaimed`).
        let (db, queue, worker_id) = (self.db.clone(), self.queue.clone(), self.worker_id);
        let round_trip = tokio::spawn(async move {
            let got = db.message_dequeue(&queue, limit, visibility_timeout, worker_id).await?;
            bury_undecodable(&db, &queue, &got.undecodable, worker_id).await;
            Ok::<_, Error>((Unclaimed { messages: Some(got.messages), db, queue }, got.retry_after))
        });
        let (mut got, retry_after) = match round_trip.await {
            Ok(got) => got?,
            Err(e) => return Err(Error::new(ErrorKind::Database, format!("the dequeue task failed: {e}"))),
        };
        *self.retry_after.lock().unwrap() = retry_after;
        let mut messages = got.messages.take().unwrap_or_default();
        self.leases.lock().unwrap().remember(&messages);
        for m in &mut messages {
            m.owner = crate::message::Owner(Some(self.db.clone())); // for Message::set_progress
        }
        Ok(messages)
    }

    /// After a dequeue: how long until the queue's rate limit gives its next
    /// token, when that limit kept the batch short (nothing more can come
    /// out before then: wait that long); else None. As Python's
    /// `Consumer.retry_after`.
    pub fn retry_after(&self) -> Option<Duration> {
        *self.retry_after.lock().unwrap()
    }

    /// Move the message to the archive with `status` (e.g. "completed").
    ///
    /// [`ErrorKind::LeaseExpired`] (changing nothing) when another consumer
    /// has taken the message since this one's lease expired.
    pub async fn archive(&self, msg: impl Into<MessageRef>, status: &str) -> Result<()> {
        self.archive_batch_with([msg.into()], status, None, None).await.map(drop)
    }

    /// Archive with a JSON `result` stored next to it.
    pub async fn archive_with(&self, msg: impl Into<MessageRef>, status: &str, result: &Value) -> Result<()> {
        self.archive_batch_with([msg.into()], status, Some(std::slice::from_ref(result)), None)
            .await
            .map(drop)
    }

    /// Archive many messages in one statement; return the archived ids.
    ///
    /// Those whose lease was lost stay as they are and are named by the
    /// LeaseExpired error returned after the others were archived
    /// ([`Error::succeeded`]).
    pub async fn archive_batch<I, R>(&self, msgs: I, status: &str) -> Result<Vec<i64>>
    where
        I: IntoIterator<Item = R>,
        R: Into<MessageRef>,
    {
        self.archive_batch_with(msgs, status, None, None).await
    }

    /// Archive many messages with one optional `result` and `error` (JSON) each.
    pub async fn archive_batch_with<I, R>(
        &self,
        msgs: I,
        status: &str,
        results: Option<&[Value]>,
        errors: Option<&[Value]>,
    ) -> Result<Vec<i64>>
    where
        I: IntoIterator<Item = R>,
        R: Into<MessageRef>,
    {
        let refs: Vec<MessageRef> = msgs.into_iter().map(Into::into).collect();
        let (ids, leases) = self.resolve(&refs, "archive")?;
        validate_status(status)?;
        let n = ids.len();
        let statuses = vec![status.to_string(); n];
        let results = self.encode_each(results, n, "result")?;
        let errors = self.encode_each(errors, n, "error")?;
        let rows =
            self.db.message_archive(&ids, &leases, &statuses, &results, &errors, Some(&self.queue)).await?;
        self.check_fenced(&rows, "archive").map(|(done, _)| done)
    }

    /// Delete the message outright (no archive row), fenced by its lease.
    pub async fn delete(&self, msg: impl Into<MessageRef>) -> Result<()> {
        self.delete_batch([msg.into()]).await.map(drop)
    }

    /// Delete many messages in one statement; return the deleted ids.
    pub async fn delete_batch<I, R>(&self, msgs: I) -> Result<Vec<i64>>
    where
        I: IntoIterator<Item = R>,
        R: Into<MessageRef>,
    {
        let refs: Vec<MessageRef> = msgs.into_iter().map(Into::into).collect();
        let (ids, leases) = self.resolve(&refs, "delete")?;
        let rows = self.db.message_delete(&ids, &leases, Some(&self.queue)).await?;
        self.check_fenced(&rows, "delete").map(|(done, _)| done)
    }

    /// Keep the lease for `duration` more from now; return the new visible_until.
    pub async fn extend(&self, msg: impl Into<MessageRef>, duration: Duration) -> Result<DateTime<Utc>> {
        let until = self.extend_batch([msg.into()], duration).await?;
        Ok(until[0])
    }

    /// Extend many leases in one statement; return the new visible_until of each, in order.
    pub async fn extend_batch<I, R>(&self, msgs: I, duration: Duration) -> Result<Vec<DateTime<Utc>>>
    where
        I: IntoIterator<Item = R>,
        R: Into<MessageRef>,
    {
        let refs: Vec<MessageRef> = msgs.into_iter().map(Into::into).collect();
        let (ids, leases) = self.resolve(&refs, "extend")?;
        positive_secs(duration, "seconds")?;
        let rows = self.db.message_extend(&ids, &leases, duration, Some(&self.queue)).await?;
        let (_, until) = self.check_fenced(&rows, "extend")?;
        ids.iter()
            .map(|id| {
                until.get(id).copied().flatten().ok_or_else(|| {
                    Error::new(ErrorKind::Database, format!("extend returned no time for {id}"))
                })
            })
            .collect()
    }

    /// Record `progress` (any JSON value but null) on the leased message's row,
    /// fenced by its lease (`LeaseExpired` when lost). `Admin::peek`, the
    /// dashboard and, once archived, the archive show the latest. Returns true
    /// when a cancellation of the message was requested: stop, then archive
    /// it (it is archived as `cancelled` whatever status is given).
    pub async fn set_progress(&self, msg: &Message, progress: &Value) -> Result<bool> {
        let (ids, leases) = self.resolve(&[MessageRef::from(msg)], "set progress of")?;
        if progress.is_null() {
            return Err(Error::invalid("progress must be a JSON value, not null"));
        }
        let text = encode(progress, "progress", self.db.config.max_payload_bytes())?;
        let outcome = self.db.message_set_progress(ids[0], leases[0], &text).await?;
        if outcome == Fence::Cancelled {
            msg.cancel.cancel();
        }
        let row = Fenced { id: ids[0], outcome, visible_until: None };
        self.check_fenced(&[row], "set progress of")?;
        Ok(outcome == Fence::Cancelled)
    }

    /// Give the message back to the queue, visible again at once.
    pub async fn release(&self, msg: impl Into<MessageRef>) -> Result<()> {
        self.release_batch_with([msg.into()], Duration::ZERO, None).await.map(drop)
    }

    /// Give the message back, visible again after `delay`, recording `error`
    /// (JSON) as its last_error.
    pub async fn release_with(
        &self,
        msg: impl Into<MessageRef>,
        delay: Duration,
        error: Option<&Value>,
    ) -> Result<()> {
        let errors = error.map(std::slice::from_ref);
        self.release_batch_with([msg.into()], delay, errors).await.map(drop)
    }

    /// Release many messages in one statement; return the released ids.
    pub async fn release_batch<I, R>(&self, msgs: I) -> Result<Vec<i64>>
    where
        I: IntoIterator<Item = R>,
        R: Into<MessageRef>,
    {
        self.release_batch_with(msgs, Duration::ZERO, None).await
    }

    /// Release many messages after `delay`, with one optional error (JSON) each.
    pub async fn release_batch_with<I, R>(
        &self,
        msgs: I,
        delay: Duration,
        errors: Option<&[Value]>,
    ) -> Result<Vec<i64>>
    where
        I: IntoIterator<Item = R>,
        R: Into<MessageRef>,
    {
        let refs: Vec<MessageRef> = msgs.into_iter().map(Into::into).collect();
        let (ids, leases) = self.resolve(&refs, "release")?;
        bounded_secs(delay, "delay")?;
        let delays = vec![delay; ids.len()];
        let errors = self.encode_each(errors, ids.len(), "error")?;
        let rows = self.db.message_release(&ids, &leases, &delays, &errors, None, Some(&self.queue)).await?;
        self.check_fenced(&rows, "release").map(|(done, _)| done)
    }

    fn resolve(&self, refs: &[MessageRef], action: &str) -> Result<(Vec<i64>, Vec<Uuid>)> {
        self.leases.lock().unwrap().resolve(refs, action)
    }

    fn encode_each(&self, values: Option<&[Value]>, n: usize, what: &str) -> Result<Vec<Option<String>>> {
        let Some(values) = values else { return Ok(vec![None; n]) };
        if values.len() != n {
            return Err(Error::invalid(format!(
                "{what}s must have one entry per message ({n}), got {}",
                values.len()
            )));
        }
        let max = self.db.config.max_payload_bytes();
        values.iter().map(|v| if v.is_null() { Ok(None) } else { encode(v, what, max).map(Some) }).collect()
    }

    /// Ids that went through (and each one's new visible_until); LeaseExpired
    /// naming the others, whose rows were left untouched.
    #[allow(clippy::type_complexity)]
    fn check_fenced(
        &self,
        rows: &[Fenced],
        action: &str,
    ) -> Result<(Vec<i64>, HashMap<i64, Option<DateTime<Utc>>>)> {
        let mut done = Vec::new();
        let mut lost = Vec::new();
        let mut gone = 0;
        let mut until = HashMap::new();
        for r in rows {
            until.insert(r.id, r.visible_until);
            // Cancelled: went through, and a cancellation was requested (an
            // archive wrote status cancelled; an extend kept the lease).
            if r.outcome == Fence::Ok || r.outcome == Fence::Cancelled {
                done.push(r.id);
            } else {
                if r.outcome == Fence::NotFound {
                    gone += 1;
                }
                lost.push(r.id);
            }
        }
        {
            // An extended lease is still held; every other action ends the lease.
            let mut leases = self.leases.lock().unwrap();
            let ended = if action == "extend" { &lost } else { &until.keys().copied().collect() };
            for id in ended {
                leases.forget_one(*id);
            }
        }
        if !lost.is_empty() && gone == lost.len() {
            // not_found: no such message waits or is in flight (archived twice, say).
            return Err(Error::lease(
                ErrorKind::LeaseExpired,
                format!(
                    "cannot {action} message(s) {lost:?}: no longer in the queue (already \
                     archived or deleted, here or by another consumer after the lease expired); \
                     nothing was changed"
                ),
                lost,
                done,
            ));
        }
        if !lost.is_empty() {
            return Err(Error::lease(
                ErrorKind::LeaseExpired,
                format!(
                    "cannot {action} message(s) {lost:?}: the lease expired and the message was \
                     redelivered to another consumer, or archived or deleted since; the row was \
                     left as it is (use a longer visibility_timeout, or extend() the lease while \
                     working)"
                ),
                lost,
                done,
            ));
        }
        Ok((done, until))
    }
}
