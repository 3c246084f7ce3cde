//! A job's whole life (issue 16) from Rust: cancel, wait, progress, retention
//! (the same SQL as Python's tests/test_lifecycle.py).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, TestDb};
use pgqrs::{
    Admin, CancelOutcome, Consumer, ErrorKind, JobError, Message, Producer, QueueOptions, Worker,
    WorkerOptions,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn setup() -> (TestDb, Admin, Producer) {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue("jobs").await.unwrap();
    let producer = Producer::new(&db.config, "jobs").await.unwrap();
    (db, admin, producer)
}

fn quick() -> WorkerOptions {
    WorkerOptions {
        concurrency: 4,
        poll_interval: Duration::from_millis(100),
        heartbeat_interval: Duration::from_millis(50),
        archive_prune_interval: Duration::from_millis(50),
        grace_period: Duration::from_secs(5),
        ..WorkerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_waiting_archives_at_once_and_bad_cases_are_typed() {
    let (db, admin, producer) = setup().await;
    let a = producer.enqueue(&json!({"n": 1})).await.unwrap();
    assert_eq!(admin.cancel(a.id).await.unwrap(), CancelOutcome::Cancelled);
    let err = admin.cancel(a.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyArchived);
    assert!(err.message().contains(&format!("message {}", a.id)) && err.message().contains("cancelled"));
    assert_eq!(admin.cancel(999_999).await.unwrap_err().kind(), ErrorKind::MessageNotFound);
    assert_eq!(admin.cancel(0).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    let batch = admin.cancel_batch(&[a.id, 999_999]).await.unwrap();
    assert_eq!(batch[&a.id], CancelOutcome::Archived("cancelled".into()));
    assert_eq!(batch[&999_999], CancelOutcome::NotFound);
    let done = admin.wait(a.id, Some(WAIT)).await.unwrap();
    assert_eq!(done.status, "cancelled");
    let b = producer.enqueue(&json!({"n": 2})).await.unwrap();
    let err = admin.wait(b.id, Some(Duration::from_millis(200))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WaitTimeout);
    assert!(err.message().contains(&format!("message {} was not archived within 0.2s", b.id)), "{err}");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_fenced_and_a_leased_cancel_archives_cancelled() {
    let (db, admin, producer) = setup().await;
    let sent = producer.enqueue(&json!({"n": 1})).await.unwrap();
    let consumer = Consumer::new(&db.config, "jobs").await.unwrap();
    let msg = consumer.dequeue().await.unwrap().unwrap();
    assert!(!msg.set_progress(&json!({"done": 1})).await.unwrap());
    let peeked = admin.peek("jobs", 10).await.unwrap();
    assert_eq!(peeked[0].0.progress, Some(json!({"done": 1})));
    assert_eq!(admin.cancel(sent.id).await.unwrap(), CancelOutcome::CancelRequested);
    assert!(consumer.set_progress(&msg, &json!({"done": 2})).await.unwrap());
    assert!(msg.is_cancelled());
    consumer.archive(&msg, "completed").await.unwrap();
    // The message enqueue returned waits for its own outcome (as Admin::wait).
    let done = sent.wait(Some(WAIT)).await.unwrap();
    assert_eq!((done.status.as_str(), done.progress), ("cancelled", Some(json!({"done": 2}))));
    // A peeked (not leased) message cannot record progress.
    let other = producer.enqueue(&json!({"n": 2})).await.unwrap();
    assert_eq!(other.set_progress(&json!({})).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    let timed_out = other.wait(Some(Duration::from_millis(200))).await.unwrap_err();
    assert_eq!(timed_out.kind(), ErrorKind::WaitTimeout);
    let copy = admin.peek("jobs", 10).await.unwrap().remove(0).0;
    assert_eq!(copy.wait(None).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_drops_a_cancelled_handler_and_archives_it_cancelled() {
    let (db, admin, producer) = setup().await;
    let sent = producer.enqueue(&json!({"n": 1})).await.unwrap();
    let started = Arc::new(tokio::sync::Notify::new());
    let dropped = Arc::new(AtomicBool::new(false));
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let worker = Worker::new(&db.config, "jobs", quick()).await.unwrap();
    let stats = worker.stats();
    let stop = worker.stop_handle();
    let (s, d) = (started.clone(), dropped.clone());
    let task = tokio::spawn(async move {
        worker
            .run_until(
                move |msg: Message| {
                    let (s, d) = (s.clone(), d.clone());
                    async move {
                        let _guard = Guard(d);
                        msg.set_progress(&json!({"step": 1})).await.map_err(JobError::give_up)?;
                        s.notify_one();
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok::<_, JobError>(json!("never"))
                    }
                },
                std::future::pending(),
            )
            .await
    });
    tokio::time::timeout(WAIT, started.notified()).await.expect("the handler started");
    assert_eq!(admin.cancel(sent.id).await.unwrap(), CancelOutcome::CancelRequested);
    let done = admin.wait(sent.id, Some(WAIT)).await.unwrap();
    assert_eq!(done.status, "cancelled");
    assert_eq!(done.result, None);
    assert_eq!(done.progress, Some(json!({"step": 1})));
    assert!(dropped.load(Ordering::SeqCst), "the handler's future was dropped");
    eventually(WAIT, "the cancelled count", || async {
        (stats.cancelled.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_prunes_the_archive_past_its_retention() {
    let (db, admin) = TestDb::installed().await;
    let keep = QueueOptions { archive_retention: Some(Duration::from_secs(3600)), ..QueueOptions::default() };
    admin.create_queue_with("jobs", &keep).await.unwrap();
    admin.create_queue("other").await.unwrap();
    let bad = QueueOptions { archive_retention: Some(Duration::ZERO), ..QueueOptions::default() };
    assert_eq!(admin.create_queue_with("x", &bad).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        admin.set_archive_retention("nope", Some(Duration::from_secs(1))).await.unwrap_err().kind(),
        ErrorKind::QueueNotFound
    );
    for q in ["jobs", "other"] {
        let p = Producer::new(&db.config, q).await.unwrap();
        let ids: Vec<i64> = p
            .enqueue_batch(&(0..25).map(|i| json!({"n": i})).collect::<Vec<_>>())
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        admin.cancel_batch(&ids).await.unwrap();
    }
    let raw = db.raw().await;
    raw.batch_execute(&format!(
        "UPDATE \"{}\".archive SET archived_at = now() - interval '2 hours'",
        db.schema
    ))
    .await
    .unwrap();
    let options = WorkerOptions { archive_prune_batch: 10, ..quick() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let stop = worker.stop_handle();
    let task = tokio::spawn(async move {
        worker.run_until(|_m: Message| async { Ok::<_, JobError>(json!(null)) }, std::future::pending()).await
    });
    let count = format!("SELECT count(*) FROM \"{}\".archive WHERE queue = $1", db.schema);
    eventually(WAIT, "the old archive of jobs pruned", || async {
        let n: i64 = raw.query_one(&count, &[&"jobs"]).await.unwrap().get(0);
        (n == 0).then_some(())
    })
    .await;
    let other: i64 = raw.query_one(&count, &[&"other"]).await.unwrap().get(0);
    assert_eq!(other, 25, "a queue without retention keeps its archive");
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}
