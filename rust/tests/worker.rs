//! The Worker against a real PostgreSQL.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, TestDb};
use pgqrs::worker::{Prefetch, StopHandle};
use pgqrs::{Admin, Backoff, JobError, Message, Producer, QueueOptions, QueueSettings, Worker, WorkerOptions};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

async fn setup(max_attempts: i32, vt: Duration) -> (TestDb, Admin, Producer) {
    let (db, admin) = TestDb::installed().await;
    admin
        .create_queue_with(
            "jobs",
            &QueueOptions { visibility_timeout: vt, max_attempts, ..Default::default() },
        )
        .await
        .unwrap();
    let producer = Producer::new(&db.config, "jobs").await.unwrap();
    (db, admin, producer)
}

fn quick() -> WorkerOptions {
    WorkerOptions {
        concurrency: 4,
        poll_interval: Duration::from_millis(100),
        backoff: Backoff { base: Duration::from_millis(50), max: Duration::from_millis(200), jitter: 0.25 },
        grace_period: Duration::from_secs(5),
        ..WorkerOptions::default()
    }
}

async fn archived(admin: &Admin, status: &str) -> usize {
    admin.list_archive(Some("jobs"), Some(status), 1000).await.unwrap().len()
}

fn start<F, Fut, R>(worker: Worker, handler: F) -> (StopHandle, tokio::task::JoinHandle<pgqrs::Result<()>>)
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<R, JobError>> + Send + 'static,
    R: serde::Serialize + Send + 'static,
{
    let stop = worker.stop_handle();
    let task = tokio::spawn(async move { worker.run_until(handler, std::future::pending()).await });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_jobs_concurrently_with_results() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue_batch(&(0..20).map(|i| json!({"n": i})).collect::<Vec<_>>()).await.unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let worker = Worker::new(&db.config, "jobs", quick()).await.unwrap();
    let stats = worker.stats();
    let (r, p) = (running.clone(), peak.clone());
    let (stop, task) = start(worker, move |msg: Message| {
        let (r, p) = (r.clone(), p.clone());
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, JobError>(json!({"double": msg.payload["n"].as_i64().unwrap() * 2}))
        }
    });
    eventually(WAIT, "20 completions", || async {
        (archived(&admin, "completed").await == 20).then_some(())
    })
    .await;
    assert!(peak.load(Ordering::SeqCst) <= 4, "never more than the concurrency");
    assert!(peak.load(Ordering::SeqCst) >= 2, "handlers ran concurrently");
    // Counted once the archive statement has returned, just after its commit.
    eventually(WAIT, "20 completion(s) counted", || async {
        (stats.completed.load(Ordering::SeqCst) == 20).then_some(())
    })
    .await;
    let done = admin.list_archive(Some("jobs"), Some("completed"), 100).await.unwrap();
    for a in &done {
        assert_eq!(a.result.as_ref().unwrap()["double"], json!(a.payload["n"].as_i64().unwrap() * 2));
    }
    let workers = admin.list_workers().await.unwrap();
    assert_eq!(workers[0].status, "running");
    stop.stop();
    task.await.unwrap().unwrap();
    assert_eq!(admin.list_workers().await.unwrap()[0].status, "stopped");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_an_idle_worker_before_the_poll() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    let options = WorkerOptions { poll_interval: Duration::from_secs(60), ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let (stop, task) = start(worker, |_msg: Message| async move { Ok::<_, JobError>(()) });
    // Wait until the worker is idle and listening (its LISTEN shows in pg_stat_activity).
    let raw = db.raw().await;
    let pattern = format!("LISTEN \"{}.enqueue\"", db.schema);
    eventually(WAIT, "LISTEN", || async {
        let row = raw
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE query = $1", &[&pattern])
            .await
            .unwrap();
        (row.get::<_, i64>(0) > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the first poll settle into its idle wait
    let started = tokio::time::Instant::now();
    producer.enqueue(&json!("wake up")).await.unwrap();
    eventually(WAIT, "completion", || async { (archived(&admin, "completed").await == 1).then_some(()) })
        .await;
    assert!(started.elapsed() < Duration::from_secs(10), "woken by NOTIFY, not the 60 s poll");
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_running_jobs_then_releases_the_rest() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue(&json!("quick")).await.unwrap();
    producer.enqueue(&json!("stuck")).await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let options = WorkerOptions { grace_period: Duration::from_millis(500), ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let (stop, task) = start(worker, move |msg: Message| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            if msg.payload == json!("stuck") {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, JobError>(())
        }
    });
    eventually(WAIT, "both handlers started", || async {
        (started.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    stop.stop();
    task.await.unwrap().unwrap();
    assert_eq!(archived(&admin, "completed").await, 1, "the running job finished within the grace period");
    let stats = admin.queue_stats("jobs").await.unwrap();
    assert_eq!((stats.ready, stats.in_flight), (1, 0), "the stuck job was released, not left leased");
    let consumer = pgqrs::Consumer::new(&db.config, "jobs").await.unwrap();
    let again = consumer.dequeue().await.unwrap().unwrap();
    assert_eq!(again.payload, json!("stuck"));
    assert_eq!(again.last_error.unwrap()["type"], json!("WorkerStopped"));
    assert_eq!(again.attempts, 2, "a handler ran: the cut-off attempt counts (no refund)");
    assert_eq!(admin.list_workers().await.unwrap()[0].status, "stopped");
    db.drop().await;
}

#[tokio::test]
async fn run_fails_when_the_queue_is_missing_or_deleted() {
    let (db, admin, _producer) = setup(5, Duration::from_secs(30)).await;
    let worker = Worker::new(&db.config, "nope", quick()).await.unwrap();
    let err = worker.run_until(|_m: Message| async { Ok::<_, JobError>(()) }, std::future::pending()).await;
    assert_eq!(err.unwrap_err().kind(), pgqrs::ErrorKind::QueueNotFound);

    let worker = Worker::new(&db.config, "jobs", quick()).await.unwrap();
    let (_stop, task) = start(worker, |_m: Message| async { Ok::<_, JobError>(()) });
    eventually(WAIT, "the worker to register", || async {
        (!admin.list_workers().await.unwrap().is_empty()).then_some(())
    })
    .await;
    admin.delete_queue("jobs").await.unwrap();
    let err = tokio::time::timeout(WAIT, task).await.expect("the worker stops").unwrap();
    assert_eq!(err.unwrap_err().kind(), pgqrs::ErrorKind::QueueNotFound);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_its_connections_being_killed() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    let app = format!("pgqrs-kill-{}", db.schema);
    let config = db.config.clone().with_application_name(&app);
    let worker = Worker::new(&config, "jobs", quick()).await.unwrap();
    let (stop, task) = start(worker, |_m: Message| async { Ok::<_, JobError>(()) });
    producer.enqueue(&json!(1)).await.unwrap();
    eventually(WAIT, "first completion", || async {
        (archived(&admin, "completed").await == 1).then_some(())
    })
    .await;

    // Kill every connection of the worker (pool and LISTEN) mid-run.
    let raw = db.raw().await;
    let killed: i64 = raw
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1);

    producer.enqueue_batch(&[json!(2), json!(3)]).await.unwrap();
    eventually(WAIT, "completions after reconnecting", || async {
        (archived(&admin, "completed").await == 3).then_some(())
    })
    .await;
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

/// Messages archived per distinct `archived_at` (one statement, one transaction, one now()).
async fn archive_statements(db: &TestDb) -> Vec<i64> {
    let raw = db.raw().await;
    let sql =
        format!("SELECT count(*) FROM \"{}\".archive GROUP BY archived_at ORDER BY archived_at", db.schema);
    raw.query(&sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

/// Count handler starts, then wait for `gate` before finishing.
fn gated(
    started: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
) -> impl Fn(Message) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), JobError>> + Send>>
       + Send
       + Sync
       + 'static {
    move |_msg: Message| {
        let (started, gate) = (started.clone(), gate.clone());
        Box::pin(async move {
            started.fetch_add(1, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_finishing_together_share_one_statement() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue_batch(&(0..30).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let options = WorkerOptions { concurrency: 30, flush_interval: Duration::from_millis(200), ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let (stop, task) = start(worker, gated(started.clone(), gate.clone()));
    eventually(WAIT, "30 running handlers", || async {
        (started.load(Ordering::SeqCst) == 30).then_some(())
    })
    .await;
    gate.add_permits(30);
    eventually(WAIT, "30 completions", || async {
        (archived(&admin, "completed").await == 30).then_some(())
    })
    .await;
    let statements = archive_statements(&db).await;
    assert!(statements.len() <= 3, "30 archives in at most 3 statements, got {statements:?}");
    // Counted once the archive statement has returned, just after its commit.
    eventually(WAIT, "30 completion(s) counted", || async {
        (stats.completed.load(Ordering::SeqCst) == 30).then_some(())
    })
    .await;
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

/// A handler for the flush tests: "held" waits for `held`, the others for
/// `gate`; each counts its start first, so that a test can have every handler
/// running before any finishes (with none running, the worker flushes at once).
type Gates = (Arc<AtomicUsize>, Arc<tokio::sync::Semaphore>, Arc<tokio::sync::Semaphore>);

fn gates() -> Gates {
    (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(tokio::sync::Semaphore::new(0)),
        Arc::new(tokio::sync::Semaphore::new(0)),
    )
}

fn held_or_gated(
    (started, gate, held): Gates,
) -> impl Fn(Message) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), JobError>> + Send>>
       + Send
       + Sync
       + 'static {
    move |msg: Message| {
        let (started, gate, held) = (started.clone(), gate.clone(), held.clone());
        Box::pin(async move {
            started.fetch_add(1, Ordering::SeqCst);
            let wait_for = if msg.payload == json!("held") { held } else { gate };
            wait_for.acquire().await.unwrap().forget();
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_flush_by_size_and_by_time() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue_batch(&(0..5).map(|i| json!({"quick": i})).collect::<Vec<_>>()).await.unwrap();
    producer.enqueue(&json!("held")).await.unwrap();
    // A full batch of 5 goes at once, although the flush interval is a minute
    // and a handler is still running.
    let options =
        WorkerOptions { concurrency: 6, flush_interval: Duration::from_secs(60), flush_size: 5, ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let g = gates();
    let (started, gate, held) = g.clone();
    let (stop, task) = start(worker, held_or_gated(g));
    eventually(WAIT, "6 running handlers", || async { (started.load(Ordering::SeqCst) == 6).then_some(()) })
        .await;
    gate.add_permits(5);
    eventually(WAIT, "a full batch written", || async {
        (archived(&admin, "completed").await == 5).then_some(())
    })
    .await;
    assert_eq!(archive_statements(&db).await, [5], "one statement for the full batch");
    stop.stop();
    held.add_permits(1);
    task.await.unwrap().unwrap();
    assert_eq!(archived(&admin, "completed").await, 6);
    db.drop().await;

    // A lone completion goes after the flush interval, while another handler still runs.
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue_batch(&[json!("quick"), json!("held")]).await.unwrap();
    let options = WorkerOptions { flush_interval: Duration::from_millis(100), ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let g = gates();
    let (started, gate, held) = g.clone();
    let (stop, task) = start(worker, held_or_gated(g));
    eventually(WAIT, "2 running handlers", || async { (started.load(Ordering::SeqCst) == 2).then_some(()) })
        .await;
    gate.add_permits(1);
    eventually(WAIT, "the quick one written", || async {
        (archived(&admin, "completed").await == 1).then_some(())
    })
    .await;
    assert_eq!(stats.in_flight.load(Ordering::SeqCst), 1, "the held one still runs");
    held.add_permits(1);
    eventually(WAIT, "both written", || async { (archived(&admin, "completed").await == 2).then_some(()) })
        .await;
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_in_a_batch_refuses_only_that_message() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    let sent = producer.enqueue_batch(&[json!(1), json!(2), json!(3)]).await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let options = WorkerOptions { flush_interval: Duration::from_millis(200), ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let (stop, task) = start(worker, gated(started.clone(), gate.clone()));
    eventually(WAIT, "3 running handlers", || async { (started.load(Ordering::SeqCst) == 3).then_some(()) })
        .await;
    // Another consumer takes message 2 over (as after its lease expired).
    let raw = db.raw().await;
    let stolen = sent[1].id;
    let sql = format!("UPDATE \"{}\".messages SET lease = gen_random_uuid() WHERE id = $1", db.schema);
    assert_eq!(raw.execute(&sql, &[&stolen]).await.unwrap(), 1);
    gate.add_permits(3);
    eventually(WAIT, "the other two archived", || async {
        (archived(&admin, "completed").await == 2).then_some(())
    })
    .await;
    eventually(WAIT, "the lost lease counted", || async {
        (stats.lease_lost.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(archive_statements(&db).await, [2], "the two went in one statement");
    let done = admin.list_archive(Some("jobs"), None, 10).await.unwrap();
    assert!(done.iter().all(|a| a.id != stolen), "the stolen message was not archived");
    assert_eq!(admin.queue_stats("jobs").await.unwrap().in_flight, 1, "it stays with its new holder");
    assert_eq!(stats.completed.load(Ordering::SeqCst), 2);
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_cut_off_by_a_lost_connection_is_retried() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue(&json!("done")).await.unwrap();
    let app = format!("pgqrs-cut-{}", db.schema);
    let config = db.config.clone().with_application_name(&app);
    let started = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let options = WorkerOptions { poll_only: true, poll_interval: Duration::from_secs(60), ..quick() };
    let worker = Worker::new(&config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let (stop, task) = start(worker, gated(started.clone(), gate.clone()));
    eventually(WAIT, "the handler running", || async { (started.load(Ordering::SeqCst) == 1).then_some(()) })
        .await;
    // Hold the archive table: the worker's archive statement waits for it ...
    let mut locker = db.raw().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute(&format!("LOCK TABLE \"{}\".archive IN ACCESS EXCLUSIVE MODE", db.schema))
        .await
        .unwrap();
    gate.add_permits(1);
    let raw = db.raw().await;
    let waiting = "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
                   AND wait_event_type = 'Lock' AND query LIKE '%message_archive%'";
    let pid: i32 = eventually(WAIT, "the archive statement waiting", || async {
        raw.query(waiting, &[&app]).await.unwrap().first().map(|r| r.get(0))
    })
    .await;
    // ... and its connection dies under it, before anything was written.
    let killed: bool = raw.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(killed);
    tx.commit().await.unwrap();
    eventually(WAIT, "the completion written on retry", || async {
        (archived(&admin, "completed").await == 1).then_some(())
    })
    .await;
    // Counted once the archive statement has returned, just after its commit.
    eventually(WAIT, "1 completion(s) counted", || async {
        (stats.completed.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(stats.unwritten.load(Ordering::SeqCst), 0);
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_serves_several_queues() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    admin.create_queue("other").await.unwrap();
    let other = Producer::new(&db.config, "other").await.unwrap();
    producer.enqueue_batch(&(0..5).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    other.enqueue_batch(&(0..5).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let worker = Worker::new(&db.config, ["jobs", "other"], quick()).await.unwrap();
    assert_eq!(worker.queues(), ["jobs", "other"]);
    let (stop, task) = start(worker, move |msg: Message| {
        s.lock().unwrap().push(msg.queue.clone());
        async move { Ok::<_, JobError>(msg.queue) }
    });
    eventually(WAIT, "10 completions", || async {
        (admin.list_archive(None, Some("completed"), 100).await.unwrap().len() == 10).then_some(())
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|q| *q == "jobs").count(), 5);
    assert_eq!(seen.iter().filter(|q| *q == "other").count(), 5);
    for a in admin.list_archive(None, Some("completed"), 100).await.unwrap() {
        assert_eq!(a.result, Some(json!(a.queue)), "the handler saw the message's own queue");
    }
    assert_eq!(admin.list_workers().await.unwrap()[0].queues, ["jobs", "other"]);
    // A NOTIFY on either queue wakes its fetch loop.
    other.enqueue(&json!("late")).await.unwrap();
    eventually(WAIT, "the late one", || async { (archived_in(&admin, "other").await == 6).then_some(()) })
        .await;
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

async fn archived_in(admin: &Admin, queue: &str) -> usize {
    admin.list_archive(Some(queue), Some("completed"), 1000).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_workers_are_reaped_periodically() {
    let (db, admin, _producer) = setup(5, Duration::from_secs(30)).await;
    let raw = db.raw().await;
    let ghost: i64 = raw
        .query_one(
            &format!(
                "INSERT INTO \"{}\".workers (hostname, pid, queues, heartbeat_at) \
                 VALUES ('ghost', 1, '{{jobs}}', now() - interval '1 hour') RETURNING id",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let options = WorkerOptions { reap_interval: Duration::from_millis(200), ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let (stop, task) = start(worker, |_m: Message| async { Ok::<_, JobError>(()) });
    eventually(WAIT, "the silent worker marked dead", || async {
        let workers = admin.list_workers().await.unwrap();
        let ghost = workers.iter().find(|w| w.id == ghost)?;
        (ghost.status == "dead").then_some(())
    })
    .await;
    let me = admin.list_workers().await.unwrap().into_iter().find(|w| w.id != ghost).unwrap();
    assert_eq!(me.status, "running", "the live worker is left alone");
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_worker_is_registered_again_under_its_id() {
    let (db, admin, _producer) = setup(5, Duration::from_secs(30)).await;
    let options = WorkerOptions { heartbeat_interval: Duration::from_millis(100), ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let (stop, task) = start(worker, |_m: Message| async { Ok::<_, JobError>(()) });
    let me = eventually(WAIT, "the worker to register", || async {
        admin.list_workers().await.unwrap().into_iter().next()
    })
    .await;
    // Pruned, as reaping does to a worker silent past the prune age.
    let raw = db.raw().await;
    raw.execute(&format!("DELETE FROM \"{}\".workers", db.schema), &[]).await.unwrap();
    // worker_alive, at the next heartbeat, registers it again: same id, same row.
    let again = eventually(WAIT, "the worker registered again", || async {
        admin.list_workers().await.unwrap().into_iter().next()
    })
    .await;
    assert_eq!(
        (again.id, &again.hostname, again.pid, &again.queues, again.status.as_str()),
        (me.id, &me.hostname, me.pid, &me.queues, "running")
    );
    stop.stop();
    task.await.unwrap().unwrap();
    let workers = admin.list_workers().await.unwrap();
    assert_eq!((workers.len(), workers[0].id, workers[0].status.as_str()), (1, me.id, "stopped"));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_the_delay_asked_for_or_the_backoff_from_sql() {
    use pgqrs::JobEventKind::Retried;
    let (db, _admin, producer) = setup(3, Duration::from_secs(30)).await;
    let asked = producer.enqueue(&json!("asked")).await.unwrap();
    let backoff = producer.enqueue(&json!("backoff")).await.unwrap();
    let worker = Worker::new(&db.config, "jobs", quick()).await.unwrap();
    let mut events = worker.subscribe();
    let (stop, task) = start(worker, |msg: Message| async move {
        match (msg.payload.as_str().unwrap(), msg.attempts) {
            ("asked", 1) => Err(JobError::retry_after("in 300 ms", Duration::from_millis(300))),
            ("backoff", 1) => Err(JobError::retry("with the backoff")),
            _ => Ok(()),
        }
    });
    let mut delays = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while delays.len() < 2 {
        let event = tokio::time::timeout_at(deadline, events.recv()).await.expect("events in time").unwrap();
        if event.kind == Retried {
            delays.insert(event.message_id, event.delay.expect("the delay message_fail used"));
        }
    }
    let asked_delay = delays[&asked.id].as_secs_f64();
    assert!((asked_delay - 0.3).abs() < 0.001, "the delay asked for: {asked_delay}");
    // quick(): base 50 ms, jitter 0.25, first attempt.
    let backoff_delay = delays[&backoff.id].as_secs_f64();
    assert!((0.0375..=0.0625).contains(&backoff_delay), "the backoff, computed in SQL: {backoff_delay}");
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_fetched_after_a_stop_go_back_with_their_attempt_refunded() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue_batch(&[json!(1), json!(2), json!(3)]).await.unwrap();
    let app = format!("pgqrs-refund-{}", db.schema);
    let config = db.config.clone().with_application_name(&app);
    // Hold the messages table so that the worker's first dequeue waits.
    let mut locker = db.raw().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute(&format!("LOCK TABLE \"{}\".messages IN SHARE MODE", db.schema)).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let options = WorkerOptions { poll_only: true, ..quick() };
    let worker = Worker::new(&config, "jobs", options).await.unwrap();
    let (stop, task) = start(worker, move |_m: Message| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, JobError>(()) }
    });
    let raw = db.raw().await;
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                   AND wait_event_type = 'Lock' AND query LIKE '%message_dequeue%'";
    eventually(WAIT, "the dequeue waiting", || async {
        (raw.query_one(waiting, &[&app]).await.unwrap().get::<_, i64>(0) == 1).then_some(())
    })
    .await;
    stop.stop();
    eventually(WAIT, "the worker stopping", || async {
        (admin.list_workers().await.unwrap()[0].status == "stopping").then_some(())
    })
    .await;
    tx.commit().await.unwrap(); // the dequeue now leases the 3 messages, to a stopping worker
    task.await.unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler started");
    let rows = raw
        .query(&format!("SELECT attempts, lease IS NULL FROM \"{}\".messages ORDER BY id", db.schema), &[])
        .await
        .unwrap();
    let rows: Vec<(i32, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows, [(0, true); 3], "released with the dequeue's attempt given back");
    assert_eq!(admin.queue_stats("jobs").await.unwrap().ready, 3);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_can_have_its_own_limits() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    admin.create_queue("other").await.unwrap();
    let other = Producer::new(&db.config, "other").await.unwrap();
    producer.enqueue_batch(&(0..6).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    other.enqueue_batch(&(0..6).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    other.enqueue(&json!("fails")).await.unwrap();
    // Per queue: (running now, peak).
    let load: Arc<std::sync::Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let l = load.clone();
    let settings = HashMap::from([
        ("jobs".to_string(), QueueSettings { concurrency: Some(1), ..QueueSettings::default() }),
        ("other".to_string(), QueueSettings { max_attempts: Some(1), ..QueueSettings::default() }),
    ]);
    let options = WorkerOptions { concurrency: 4, queue_settings: settings, ..quick() };
    let worker = Worker::new(&db.config, ["jobs", "other"], options).await.unwrap();
    let (stop, task) = start(worker, move |msg: Message| {
        let l = l.clone();
        async move {
            {
                let mut load = l.lock().unwrap();
                let (now, peak) = load.entry(msg.queue.clone()).or_default();
                *now += 1;
                *peak = (*peak).max(*now);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            l.lock().unwrap().get_mut(&msg.queue).unwrap().0 -= 1;
            if msg.payload == json!("fails") {
                return Err(JobError::retry("once is enough here"));
            }
            Ok::<_, JobError>(())
        }
    });
    eventually(WAIT, "all 13 settled", || async {
        (admin.list_archive(None, None, 100).await.unwrap().len() == 13).then_some(())
    })
    .await;
    let load = load.lock().unwrap().clone();
    assert_eq!(load["jobs"].1, 1, "jobs never ran more than its own limit");
    assert!(load["other"].1 >= 2, "other used the rest of the worker's concurrency: {load:?}");
    assert_eq!(archived_in(&admin, "other").await, 6);
    let dead = admin.list_archive(Some("other"), Some("dead"), 10).await.unwrap();
    assert_eq!((dead.len(), dead[0].attempts), (1, 1), "other's max_attempts of 1");
    stop.stop();
    task.await.unwrap().unwrap();

    let bad = WorkerOptions {
        queue_settings: HashMap::from([("nope".to_string(), QueueSettings::default())]),
        ..quick()
    };
    let err = Worker::new(&db.config, "jobs", bad).await.err().unwrap();
    assert_eq!(err.kind(), pgqrs::ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("nope"), "{err}");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_events_tell_each_step() {
    use pgqrs::JobEventKind::{Completed, Dead, Failed, Retried, Started};
    let (db, _admin, producer) = setup(2, Duration::from_secs(30)).await;
    let names = ["ok", "give up", "retry", "boom"];
    let sent = producer.enqueue_batch(&names.iter().map(|n| json!(n)).collect::<Vec<_>>()).await.unwrap();
    let worker = Worker::new(&db.config, "jobs", quick()).await.unwrap();
    let mut events = worker.subscribe();
    let (stop, task) = start(worker, |msg: Message| async move {
        match msg.payload.as_str().unwrap() {
            "ok" => Ok(()),
            "give up" => Err(JobError::give_up("no")),
            "retry" => Err(JobError::retry("later")),
            _ => Err(std::io::Error::other("boom").into()),
        }
    });
    let mut seen: HashMap<i64, Vec<pgqrs::JobEventKind>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.values().flatten().filter(|k| matches!(k, Completed | Dead)).count() < 4 {
        let event = tokio::time::timeout_at(deadline, events.recv()).await.expect("events in time").unwrap();
        assert_eq!(event.queue, "jobs");
        if event.kind == Retried {
            assert!(event.delay.is_some() && event.error.is_some(), "{event:?}");
        }
        seen.entry(event.message_id).or_default().push(event.kind);
    }
    let of = |name: &str| seen[&sent[names.iter().position(|n| *n == name).unwrap()].id].clone();
    assert_eq!(of("ok"), [Started, Completed]);
    assert_eq!(of("give up"), [Started, Failed, Dead]);
    assert_eq!(of("retry"), [Started, Retried, Started, Dead], "an asked-for retry is no failure");
    assert_eq!(of("boom"), [Started, Failed, Retried, Started, Failed, Dead]);
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_due_together_are_extended_in_one_statement() {
    let (db, admin, producer) = setup(5, Duration::from_millis(800)).await;
    producer.enqueue_batch(&(0..5).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let options = WorkerOptions { concurrency: 5, ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let (stop, task) = start(worker, gated(started.clone(), gate.clone()));
    let raw = db.raw().await;
    let sql = format!(
        "SELECT count(*), count(DISTINCT visible_at), \
         bool_and(visible_at - dequeued_at > interval '800 milliseconds') \
         FROM \"{}\".messages WHERE lease IS NOT NULL",
        db.schema
    );
    // Held past half their lease, all five are extended by one statement
    // (one now(): one visible_at), and again later, never by five.
    eventually(WAIT, "the five leases extended", || async {
        let row = raw.query_one(&sql, &[]).await.unwrap();
        let (held, distinct, extended): (i64, i64, Option<bool>) = (row.get(0), row.get(1), row.get(2));
        (held == 5 && extended == Some(true)).then_some(distinct)
    })
    .await;
    let row = raw.query_one(&sql, &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(1), 1, "one visible_at: one message_extend statement");
    tokio::time::sleep(Duration::from_millis(1200)).await; // past the first lease: kept, not redelivered
    assert_eq!(admin.queue_stats("jobs").await.unwrap().in_flight, 5);
    gate.add_permits(5);
    eventually(WAIT, "5 completions", || async { (archived(&admin, "completed").await == 5).then_some(()) })
        .await;
    let done = admin.list_archive(Some("jobs"), None, 10).await.unwrap();
    assert!(done.iter().all(|a| a.attempts == 1), "delivered once each");
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

/// Check that `check` holds at every look for `window`. For a property that
/// nothing more happens (no fetch past a bound), there is no event to wait
/// for: this watches it over a window of several poll intervals instead.
async fn holds_for<F, Fut>(window: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        assert!(check().await, "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Peaks seen by handlers, of handlers running and of messages held.
#[derive(Default)]
struct Peaks {
    running: HashMap<String, usize>,
    peak: HashMap<String, usize>,
    total: usize,
    counted_running: u64,
    held: u64,
}

impl Peaks {
    fn observe(&mut self, stats: &pgqrs::WorkerStats) {
        self.counted_running = self.counted_running.max(stats.running.load(Ordering::SeqCst));
        self.held = self.held.max(stats.in_flight.load(Ordering::SeqCst));
    }
}

/// `concurrency` bounds handlers running (per queue and in all); messages held
/// (running, or waiting for their outcome to be written) stay within
/// concurrency + completion_backlog (0: a slot waits for its write).
async fn concurrency_limits_hold(backlog: usize) {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    admin.create_queue("other").await.unwrap();
    let other = Producer::new(&db.config, "other").await.unwrap();
    producer.enqueue_batch(&(0..12).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    other.enqueue_batch(&(0..4).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let settings = HashMap::from([(
        "other".to_string(),
        QueueSettings { concurrency: Some(1), ..QueueSettings::default() },
    )]);
    let options =
        WorkerOptions { concurrency: 3, completion_backlog: backlog, queue_settings: settings, ..quick() };
    let worker = Worker::new(&db.config, ["jobs", "other"], options).await.unwrap();
    let stats = worker.stats();
    let peaks: Arc<std::sync::Mutex<Peaks>> = Arc::default();
    let (p, s) = (peaks.clone(), stats.clone());
    let (stop, task) = start(worker, move |msg: Message| {
        let (p, s) = (p.clone(), s.clone());
        async move {
            {
                let mut p = p.lock().unwrap();
                let now = {
                    let r = p.running.entry(msg.queue.clone()).or_default();
                    *r += 1;
                    *r
                };
                let peak = p.peak.entry(msg.queue.clone()).or_default();
                *peak = (*peak).max(now);
                let total = p.running.values().sum();
                p.total = p.total.max(total);
                p.observe(&s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut p = p.lock().unwrap();
            *p.running.get_mut(&msg.queue).unwrap() -= 1;
            p.observe(&s);
            Ok::<_, JobError>(())
        }
    });
    eventually(WAIT, "16 completions", || async {
        (admin.list_archive(None, Some("completed"), 100).await.unwrap().len() == 16).then_some(())
    })
    .await;
    stop.stop();
    task.await.unwrap().unwrap();
    {
        let p = peaks.lock().unwrap();
        assert_eq!(p.total, 3, "the concurrency reached, never exceeded");
        assert_eq!(p.peak["other"], 1, "other's own limit");
        assert!(p.counted_running <= 3, "stats.running agrees: {}", p.counted_running);
        assert!(p.held as usize <= 3 + backlog, "held {} > concurrency + backlog", p.held);
    }
    let counts = |s: &pgqrs::WorkerStats| {
        (
            s.completed.load(Ordering::SeqCst),
            s.in_flight.load(Ordering::SeqCst),
            s.running.load(Ordering::SeqCst),
        )
    };
    assert_eq!(counts(&stats), (16, 0, 0));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limits_hold_with_a_completion_backlog() {
    concurrency_limits_hold(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limits_hold_without_a_completion_backlog() {
    concurrency_limits_hold(0).await;
}

/// Outcomes that cannot be written (another transaction holds the rows of the
/// first two messages, so the completer's first archive statement waits)
/// pile up in the completion backlog: handlers go on starting while nothing
/// is written, until the worker holds concurrency + completion_backlog
/// messages; then it fetches no more, and resumes when the writes go
/// through. With a backlog of 0, a slot waits for its write. Nothing is lost.
async fn a_full_completion_backlog_stops_fetching(backlog: usize) {
    let concurrency = 2;
    let bound = concurrency + backlog;
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue_batch(&(0..20).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let app = format!("pgqrs-backlog-{}", db.schema);
    let config = db.config.clone().with_application_name(&app);
    let options = WorkerOptions {
        concurrency,
        completion_backlog: backlog,
        poll_interval: Duration::from_millis(50),
        ..quick()
    };
    let worker = Worker::new(&config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let handled: Arc<std::sync::Mutex<Vec<i64>>> = Arc::default();
    let peaks: Arc<std::sync::Mutex<Peaks>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (h, p, s, g) = (handled.clone(), peaks.clone(), stats.clone(), gate.clone());
    let (stop, task) = start(worker, move |msg: Message| {
        let (h, p, s, g) = (h.clone(), p.clone(), s.clone(), g.clone());
        async move {
            h.lock().unwrap().push(msg.id);
            p.lock().unwrap().observe(&s);
            g.acquire().await.unwrap().forget();
            Ok::<_, JobError>(())
        }
    });
    let count = || handled.lock().unwrap().len();
    eventually(WAIT, "both slots running", || async { (count() == concurrency).then_some(()) }).await;
    // Lock the rows of the two running messages: their archive will wait.
    let first = handled.lock().unwrap().clone();
    let mut locker = db.raw().await;
    let tx = locker.transaction().await.unwrap();
    let lock = format!("SELECT 1 FROM \"{}\".messages WHERE id = ANY($1) FOR UPDATE", db.schema);
    assert_eq!(tx.query(&lock, &[&first]).await.unwrap().len(), concurrency);
    gate.add_permits(1000);
    let raw = db.raw().await;
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                   AND wait_event_type = 'Lock' AND query LIKE '%message_archive%'";
    eventually(WAIT, "the worker holding its bound, its archive statement waiting", || async {
        let blocked = raw.query_one(waiting, &[&app]).await.unwrap().get::<_, i64>(0) == 1;
        let held = stats.in_flight.load(Ordering::SeqCst) as usize;
        (blocked && count() == bound && held == bound).then_some(())
    })
    .await;
    // A NOTIFY wakes the fetch loop, which still fetches nothing.
    producer.enqueue(&json!(20)).await.unwrap();
    holds_for(Duration::from_millis(400), "the held bound", || async {
        let leased = admin.queue_stats("jobs").await.unwrap().in_flight as usize;
        count() == bound && leased == bound && archived(&admin, "completed").await == 0
    })
    .await;
    tx.commit().await.unwrap();
    eventually(WAIT, "21 completions", || async {
        (archived(&admin, "completed").await == 21).then_some(())
    })
    .await;
    stop.stop();
    task.await.unwrap().unwrap();
    let mut ids = handled.lock().unwrap().clone();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 21, "each message handled once");
    {
        let p = peaks.lock().unwrap();
        assert!(p.held as usize <= bound, "held {} > {bound}", p.held);
        assert!(p.counted_running as usize <= concurrency, "running {} > {concurrency}", p.counted_running);
    }
    assert_eq!(stats.completed.load(Ordering::SeqCst), 21);
    assert_eq!((stats.in_flight.load(Ordering::SeqCst), stats.running.load(Ordering::SeqCst)), (0, 0));
    assert_eq!(stats.unwritten.load(Ordering::SeqCst), 0);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_completion_backlog_stops_fetching_until_writes_catch_up() {
    a_full_completion_backlog_stops_fetching(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_completion_backlog_a_slot_waits_for_its_write() {
    a_full_completion_backlog_stops_fetching(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_freed_slot_is_refilled_while_other_handlers_run() {
    // Concurrency 8: a dequeue waits for 2 free slots while handlers run, but
    // no longer than the fetch delay, so one slot freed at a time still works.
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    let mut payloads = vec![json!("held"); 7];
    payloads.extend((0..5).map(|i| json!(i)));
    producer.enqueue_batch(&payloads).await.unwrap();
    let options = WorkerOptions { concurrency: 8, poll_interval: Duration::from_secs(60), ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let g = gates();
    let (_started, gate, held) = g.clone();
    gate.add_permits(1000); // only "held" handlers wait
    let (stop, task) = start(worker, held_or_gated(g));
    eventually(WAIT, "the 5 quick ones completed", || async {
        (archived(&admin, "completed").await == 5).then_some(())
    })
    .await;
    assert_eq!(stats.running.load(Ordering::SeqCst), 7, "the held ones still run");
    held.add_permits(7);
    eventually(WAIT, "all 12 completed", || async {
        (archived(&admin, "completed").await == 12).then_some(())
    })
    .await;
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test]
async fn completion_backlog_is_checked() {
    let db = TestDb::new();
    let options = WorkerOptions { completion_backlog: pgqrs::worker::MAX_COMPLETION_BACKLOG + 1, ..quick() };
    let err = Worker::new(&db.config, "jobs", options).await.err().unwrap();
    assert_eq!(err.kind(), pgqrs::ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("completion_backlog"), "{err}");
    assert_eq!(WorkerOptions::default().completion_backlog, 2 * pgqrs::worker::DEFAULT_FLUSH_SIZE);
}

#[tokio::test]
async fn backoff_and_fetch_options_are_checked() {
    let db = TestDb::new();
    let bad = |options: WorkerOptions, named: &'static str| {
        let config = db.config.clone();
        async move {
            let err = Worker::new(&config, "jobs", options).await.err().unwrap();
            assert_eq!(err.kind(), pgqrs::ErrorKind::InvalidArgument);
            assert!(err.to_string().contains(named), "{named}: {err}");
        }
    };
    let slow = Backoff { base: Duration::from_secs(10), max: Duration::from_secs(1), jitter: 0.1 };
    bad(WorkerOptions { backoff: slow, ..quick() }, "backoff.max").await;
    bad(
        WorkerOptions { backoff: Backoff { jitter: 1.5, ..Backoff::default() }, ..quick() },
        "backoff.jitter",
    )
    .await;
    let dsn = "postgresql://localhost/elsewhere".to_string();
    let both = WorkerOptions { poll_only: true, listen_dsn: Some(dsn), ..quick() };
    bad(both, "poll_only").await;
    bad(WorkerOptions { batch_size: 0, ..quick() }, "batch_size").await;
    bad(WorkerOptions { fetch_batch_fraction: 0.0, ..quick() }, "fetch_batch_fraction").await;
    bad(WorkerOptions { prefetch_duration_weight: 1.5, ..quick() }, "prefetch_duration_weight").await;
    bad(WorkerOptions { prefetch_max_wait: Duration::ZERO, ..quick() }, "prefetch_max_wait").await;
}

/// The messages table: (attempts, leased) of each row, by id.
async fn message_rows(db: &TestDb) -> Vec<(i32, bool)> {
    let raw = db.raw().await;
    let sql = format!("SELECT attempts, lease IS NOT NULL FROM \"{}\".messages ORDER BY id", db.schema);
    raw.query(&sql, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// 300 no-op jobs at concurrency 2 with `prefetch`: the count of messages
/// dequeued ahead of a free slot, once every job completed exactly once.
async fn fast_jobs(prefetch: Prefetch) -> u64 {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue_batch(&(0..300).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let options = WorkerOptions { concurrency: 2, prefetch, ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let handled: Arc<std::sync::Mutex<Vec<i64>>> = Arc::default();
    let h = handled.clone();
    let (stop, task) = start(worker, move |msg: Message| {
        h.lock().unwrap().push(msg.id);
        async { Ok::<_, JobError>(()) }
    });
    eventually(WAIT, "300 completions", || async {
        (archived(&admin, "completed").await == 300).then_some(())
    })
    .await;
    stop.stop();
    task.await.unwrap().unwrap();
    let mut ids = handled.lock().unwrap().clone();
    assert_eq!(ids.len(), 300, "300 handler calls");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 300, "each message handled once");
    assert_eq!(stats.completed.load(Ordering::SeqCst), 300);
    assert_eq!((stats.in_flight.load(Ordering::SeqCst), stats.running.load(Ordering::SeqCst)), (0, 0));
    db.drop().await;
    stats.prefetched.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_prefetch_dequeues_ahead_of_free_slots_for_fast_handlers() {
    assert_eq!(WorkerOptions::default().prefetch, Prefetch::Auto);
    let prefetched = fast_jobs(Prefetch::Auto).await;
    assert!(prefetched > 0, "dequeues brought more than the free slots");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_zero_leases_only_what_can_start() {
    assert_eq!(fast_jobs(Prefetch::Fixed(0)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_prefetched_messages_go_back_when_handlers_turn_slow() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue_batch(&(0..10).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let options = WorkerOptions { concurrency: 2, ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let g = gates();
    let (started, gate, held) = g.clone();
    gate.add_permits(1000); // only "held" handlers wait
    let (stop, task) = start(worker, held_or_gated(g));
    eventually(WAIT, "10 fast completions", || async {
        (archived(&admin, "completed").await == 10).then_some(())
    })
    .await;
    // The handlers were fast: the next dequeue takes messages ahead, then
    // both slots get stuck.
    let before = stats.prefetched.load(Ordering::SeqCst);
    producer.enqueue_batch(&vec![json!("held"); 20]).await.unwrap();
    eventually(WAIT, "both slots stuck, messages prefetched", || async {
        let prefetched = stats.prefetched.load(Ordering::SeqCst) > before;
        (started.load(Ordering::SeqCst) == 12 && prefetched).then_some(())
    })
    .await;
    // Half a second later the waiting ones are given back, attempt refunded;
    // only the two running stay leased, and nothing more is fetched ahead.
    eventually(WAIT, "the prefetched messages given back", || async {
        let rows = message_rows(&db).await;
        let leased: Vec<_> = rows.iter().filter(|(_, leased)| *leased).collect();
        (rows.len() == 20 && leased == [&(1, true); 2] && stats.in_flight.load(Ordering::SeqCst) == 2)
            .then_some(rows)
    })
    .await
    .iter()
    .filter(|(_, leased)| !leased)
    .for_each(|row| assert_eq!(*row, (0, false), "given back with the dequeue's attempt refunded"));
    holds_for(Duration::from_millis(300), "two leased", || async {
        message_rows(&db).await.iter().filter(|(_, leased)| *leased).count() == 2
    })
    .await;
    held.add_permits(20);
    eventually(WAIT, "30 completions", || async {
        (archived(&admin, "completed").await == 30).then_some(())
    })
    .await;
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_whose_prefetch_went_stale_fetches_nothing_ahead() {
    // "jobs" handlers are fast, until one gets stuck while "other" holds the
    // worker's second slot: the messages "jobs" took ahead wait, and go back.
    // Its handlers are then taken to be slow: once "other" frees its slot,
    // "jobs" fetches one message per free slot, nothing ahead.
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    admin.create_queue("other").await.unwrap();
    let other = Producer::new(&db.config, "other").await.unwrap();
    producer.enqueue_batch(&(0..10).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let options = WorkerOptions { concurrency: 2, ..quick() };
    let worker = Worker::new(&db.config, ["jobs", "other"], options).await.unwrap();
    let stats = worker.stats();
    let started = Arc::new(AtomicUsize::new(0));
    let (held, other_gate) =
        (Arc::new(tokio::sync::Semaphore::new(0)), Arc::new(tokio::sync::Semaphore::new(0)));
    let (s, h, o) = (started.clone(), held.clone(), other_gate.clone());
    let (stop, task) = start(worker, move |msg: Message| {
        let (s, h, o) = (s.clone(), h.clone(), o.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            if msg.queue == "other" {
                o.acquire().await.unwrap().forget();
            } else if msg.payload == json!("held") {
                h.acquire().await.unwrap().forget();
            }
            Ok::<_, JobError>(())
        }
    });
    eventually(WAIT, "10 fast completions", || async {
        (archived_in(&admin, "jobs").await == 10).then_some(())
    })
    .await;
    other.enqueue(&json!("held")).await.unwrap();
    eventually(WAIT, "other's handler running", || async {
        (started.load(Ordering::SeqCst) == 11).then_some(())
    })
    .await;
    let before = stats.prefetched.load(Ordering::SeqCst);
    let mut payloads = vec![json!("held")];
    payloads.extend((0..8).map(|i| json!(i)));
    producer.enqueue_batch(&payloads).await.unwrap();
    eventually(WAIT, "one slot each stuck, messages of jobs prefetched", || async {
        let prefetched = stats.prefetched.load(Ordering::SeqCst) > before;
        (started.load(Ordering::SeqCst) == 12 && prefetched).then_some(())
    })
    .await;
    eventually(WAIT, "the prefetched messages given back", || async {
        let leased = message_rows(&db).await.iter().filter(|(_, leased)| *leased).count();
        (leased == 2).then_some(())
    })
    .await;
    let prefetched = stats.prefetched.load(Ordering::SeqCst);
    other_gate.add_permits(1);
    eventually(WAIT, "the 8 others completed", || async {
        (archived_in(&admin, "jobs").await == 18).then_some(())
    })
    .await;
    assert_eq!(stats.prefetched.load(Ordering::SeqCst), prefetched, "nothing more fetched ahead");
    held.add_permits(1);
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_messages_of_a_short_batch_start_without_waiting_for_a_poll() {
    // The dequeue asks for 1 + 5 and gets 3: the queue is drained, so the
    // fetch loop waits for a NOTIFY or the (long) poll interval, while the
    // two prefetched messages start as the slot frees up.
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue_batch(&[json!(1), json!(2), json!(3)]).await.unwrap();
    let options = WorkerOptions {
        concurrency: 1,
        prefetch: Prefetch::Fixed(5),
        poll_interval: Duration::from_secs(60),
        poll_only: true, // no wake-up at the LISTEN connection's start
        ..quick()
    };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let (stop, task) = start(worker, |_msg: Message| async { Ok::<_, JobError>(()) });
    eventually(WAIT, "3 completions", || async { (archived(&admin, "completed").await == 3).then_some(()) })
        .await;
    assert_eq!(stats.prefetched.load(Ordering::SeqCst), 2);
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_fetched_ahead_while_every_slot_is_busy() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    producer.enqueue(&json!(0)).await.unwrap();
    let options = WorkerOptions { concurrency: 1, prefetch: Prefetch::Fixed(5), ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let started = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (stop, task) = start(worker, gated(started.clone(), gate.clone()));
    eventually(WAIT, "the only slot busy", || async { (started.load(Ordering::SeqCst) == 1).then_some(()) })
        .await;
    producer.enqueue_batch(&(1..6).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    eventually(WAIT, "five more leased ahead", || async {
        let leased = message_rows(&db).await.iter().filter(|(_, leased)| *leased).count();
        (leased == 6 && stats.prefetched.load(Ordering::SeqCst) == 5).then_some(())
    })
    .await;
    assert_eq!(started.load(Ordering::SeqCst), 1, "still one running");
    gate.add_permits(6);
    eventually(WAIT, "6 completions", || async { (archived(&admin, "completed").await == 6).then_some(()) })
        .await;
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test]
async fn prefetch_is_checked() {
    let db = TestDb::new();
    let options = WorkerOptions { prefetch: Prefetch::Fixed(pgqrs::MAX_BATCH + 1), ..quick() };
    let err = Worker::new(&db.config, "jobs", options).await.err().unwrap();
    assert_eq!(err.kind(), pgqrs::ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("prefetch"), "{err}");
}

/// `WorkerOptions::default()` (and the other worker defaults) are the values
/// of `sql/worker_defaults.json`, the data file both workers' defaults are
/// generated from (tests/test_worker_defaults.py runs this).
#[test]
fn worker_options_default_is_the_data_file() {
    use pgqrs::worker::{
        DEFAULT_RECONNECT_MAX, DEFAULT_RECONNECT_MIN, DEFAULT_SCHEDULE_CATCH_UP, DEFAULT_SCHEDULE_TICK,
    };
    let data: serde_json::Value =
        serde_json::from_str(include_str!("../../sql/worker_defaults.json")).unwrap();
    let entries = data["defaults"].as_array().unwrap();
    let entry = |name: &str| {
        entries.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{name} not in the data file"))
    };
    // A value is a number, or {"times": n, "of": NAME}: n times another default.
    let number = |name: &str| -> f64 {
        let value = &entry(name)["value"];
        match value["of"].as_str() {
            Some(of) => value["times"].as_f64().unwrap() * entry(of)["value"].as_f64().unwrap(),
            None => value.as_f64().unwrap_or_else(|| panic!("{name} is not a number")),
        }
    };
    let o = WorkerOptions::default();
    let secs = |d: Duration| d.as_secs_f64();
    for e in entries {
        let name = e["name"].as_str().unwrap();
        let got = match name {
            "DEFAULT_PREFETCH" => {
                assert_eq!((e["value"].as_str(), o.prefetch), (Some("auto"), Prefetch::Auto));
                continue;
            }
            "DEFAULT_CONCURRENCY" => o.concurrency as f64,
            "DEFAULT_POLL_INTERVAL" => secs(o.poll_interval),
            "DEFAULT_BATCH_CAP" => o.batch_size as f64,
            "DEFAULT_FETCH_BATCH_FRACTION" => o.fetch_batch_fraction,
            "DEFAULT_FETCH_DELAY" => secs(o.fetch_delay),
            "DEFAULT_PREFETCH_HORIZON" => secs(o.prefetch_horizon),
            "DEFAULT_PREFETCH_PER_SLOT" => o.prefetch_per_slot as f64,
            "DEFAULT_PREFETCH_DURATION_WEIGHT" => o.prefetch_duration_weight,
            "DEFAULT_PREFETCH_MAX_WAIT" => secs(o.prefetch_max_wait),
            "DEFAULT_FLUSH_INTERVAL" => secs(o.flush_interval),
            "DEFAULT_FLUSH_SIZE" => o.flush_size as f64,
            "DEFAULT_COMPLETION_BACKLOG" => o.completion_backlog as f64,
            "DEFAULT_GRACE_PERIOD" => secs(o.grace_period),
            "DEFAULT_HEARTBEAT_INTERVAL" => secs(o.heartbeat_interval),
            "DEFAULT_REAP_INTERVAL" => secs(o.reap_interval),
            "DEFAULT_ARCHIVE_PRUNE_INTERVAL" => secs(o.archive_prune_interval),
            "DEFAULT_ARCHIVE_PRUNE_BATCH" => o.archive_prune_batch as f64,
            "DEFAULT_LEASE_EXTEND_AT" => o.lease_extend_at,
            "DEFAULT_LEASE_CHECK_INTERVAL" => secs(o.lease_check_interval),
            "DEFAULT_BACKOFF_BASE" => secs(o.backoff.base),
            "DEFAULT_BACKOFF_MAX" => secs(o.backoff.max),
            "DEFAULT_BACKOFF_JITTER" => o.backoff.jitter,
            "DEFAULT_RECONNECT_MIN" => secs(DEFAULT_RECONNECT_MIN),
            "DEFAULT_RECONNECT_MAX" => secs(DEFAULT_RECONNECT_MAX),
            "DEFAULT_SHUTDOWN_WRITE_TIMEOUT" => secs(o.shutdown_write_timeout),
            // Constants of the schedule tick (docs/schedules.md), not options.
            "DEFAULT_SCHEDULE_TICK" => secs(DEFAULT_SCHEDULE_TICK),
            "DEFAULT_SCHEDULE_CATCH_UP" => secs(DEFAULT_SCHEDULE_CATCH_UP),
            other => panic!("{other} of the data file has no Rust option here: add it"),
        };
        let want = number(name);
        assert!(
            (got - want).abs() < 1e-9,
            "{name}: WorkerOptions::default() has {got}, the data file {want}"
        );
    }
    assert_eq!((o.poll_only, o.listen_dsn, o.visibility_timeout, o.max_attempts), (false, None, None, None));
    assert_eq!(o.run_schedules, None);
}
