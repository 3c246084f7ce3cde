//! The Worker against a real PostgreSQL.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, TestDb};
use pgqrs::worker::StopHandle;
use pgqrs::{Admin, JobError, Message, Producer, QueueOptions, Worker, WorkerOptions};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

async fn setup(max_attempts: i32, vt: Duration) -> (TestDb, Admin, Producer) {
    let (db, admin) = TestDb::installed().await;
    admin
        .create_queue_with("jobs", &QueueOptions { visibility_timeout: vt, max_attempts, exist_ok: false })
        .await
        .unwrap();
    let producer = Producer::new(&db.config, "jobs").await.unwrap();
    (db, admin, producer)
}

fn quick() -> WorkerOptions {
    WorkerOptions {
        concurrency: 4,
        poll_interval: Duration::from_millis(100),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
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
    assert_eq!(stats.completed.load(Ordering::SeqCst), 20);
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
async fn failures_retry_with_backoff_then_dead() {
    let (db, admin, producer) = setup(3, Duration::from_secs(30)).await;
    let sent = producer.enqueue(&json!("always fails")).await.unwrap();
    producer.enqueue(&json!("give up")).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let worker = Worker::new(&db.config, "jobs", quick()).await.unwrap();
    let stats = worker.stats();
    let (stop, task) = start(worker, move |msg: Message| {
        let c = c.clone();
        async move {
            if msg.payload == json!("give up") {
                return Err(JobError::give_up("not worth it"));
            }
            c.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(JobError::retry(format!("attempt {} failed", msg.attempts)))
        }
    });
    eventually(WAIT, "two dead messages", || async { (archived(&admin, "dead").await == 2).then_some(()) })
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "max_attempts deliveries");
    assert_eq!(stats.retried.load(Ordering::SeqCst), 2);
    assert_eq!(stats.dead.load(Ordering::SeqCst), 2);
    let dead = admin.list_archive(Some("jobs"), Some("dead"), 10).await.unwrap();
    let failed = dead.iter().find(|a| a.id == sent.id).unwrap();
    assert_eq!(failed.attempts, 3);
    let error = failed.error.as_ref().unwrap();
    assert_eq!(
        (&error["type"], &error["message"], &error["attempt"]),
        (&json!("pgqrs.Retry"), &json!("attempt 3 failed"), &json!(3))
    );
    assert!(error["worker_id"].is_i64());
    let gave_up = dead.iter().find(|a| a.id != sent.id).unwrap();
    assert_eq!(gave_up.attempts, 1);
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_handler_keeps_its_lease() {
    let (db, admin, producer) = setup(5, Duration::from_millis(600)).await;
    producer.enqueue(&json!("slow")).await.unwrap();
    let worker = Worker::new(&db.config, "jobs", quick()).await.unwrap();
    let (stop, task) = start(worker, |_msg: Message| async move {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        Ok::<_, JobError>(())
    });
    let other = pgqrs::Consumer::new(&db.config, "jobs").await.unwrap();
    eventually(WAIT, "the worker to lease the message", || async {
        (admin.queue_stats("jobs").await.unwrap().in_flight == 1).then_some(())
    })
    .await;
    // While the handler runs (over three visibility timeouts), nobody else gets the message.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1800);
    while tokio::time::Instant::now() < deadline {
        assert!(other.dequeue().await.unwrap().is_none(), "lease was kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(WAIT, "completion", || async { (archived(&admin, "completed").await == 1).then_some(()) })
        .await;
    let done = admin.list_archive(Some("jobs"), None, 10).await.unwrap();
    assert_eq!(done[0].attempts, 1, "delivered once");
    stop.stop();
    task.await.unwrap().unwrap();
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
    let options = WorkerOptions { shutdown_grace: Duration::from_millis(500), ..quick() };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_queue_is_not_fetched_until_resumed() {
    let (db, admin, producer) = setup(5, Duration::from_secs(30)).await;
    admin.pause_queue("jobs").await.unwrap();
    producer.enqueue(&json!("waits")).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let worker = Worker::new(&db.config, "jobs", quick()).await.unwrap();
    let (stop, task) = start(worker, move |_m: Message| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, JobError>(())
        }
    });
    // Several poll intervals pass with the queue paused: nothing is delivered.
    eventually(WAIT, "the worker to register", || async {
        (!admin.list_workers().await.unwrap().is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(admin.queue_stats("jobs").await.unwrap().ready, 1);
    admin.resume_queue("jobs").await.unwrap();
    eventually(WAIT, "completion after resume", || async {
        (archived(&admin, "completed").await == 1).then_some(())
    })
    .await;
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}
