//! Flow control from Rust (issue 17, docs/flow-control.md): concurrency
//! limits, message groups and rate limits, enforced by the server's dequeue.
//! tests/test_flow_control.py checks the same through Python.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, TestDb};
use pgqrs::{
    Consumer, EnqueueOptions, ErrorKind, JobError, Message, Producer, QueueOptions, QueueUpdate, RateLimit,
    Worker, WorkerOptions,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn limits_are_stored_shown_changed_and_removed() {
    let (db, admin) = TestDb::installed().await;
    let options = QueueOptions {
        concurrency_limit: Some(5),
        group_concurrency: Some(1),
        rate_limit: Some("200/s".parse().unwrap()),
        ..Default::default()
    };
    let info = admin.create_queue_with("jobs", &options).await.unwrap();
    assert_eq!((info.concurrency_limit, info.group_concurrency), (Some(5), Some(1)));
    assert_eq!(info.rate_limit, Some(RateLimit::new(200, Duration::from_secs(1)).unwrap()));
    let stats = admin.queue_stats("jobs").await.unwrap();
    assert_eq!((stats.concurrency_limit, stats.group_concurrency), (Some(5), Some(1)));
    let after = admin
        .update_queue("jobs", &QueueUpdate { concurrency_limit: Some(None), ..Default::default() })
        .await
        .unwrap();
    assert_eq!((after.concurrency_limit, after.group_concurrency), (None, Some(1)));
    let per_group = RateLimit::new(10, Duration::from_secs(60)).unwrap().per_group();
    let after = admin
        .update_queue("jobs", &QueueUpdate { rate_limit: Some(Some(per_group)), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(after.rate_limit, Some(per_group));
    let err = admin.update_queue("nope", &QueueUpdate::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QueueNotFound);
    db.drop().await;
}

#[tokio::test]
async fn bad_limits_and_groups_are_typed_errors_and_nothing_is_written() {
    let (db, admin) = TestDb::installed().await;
    for options in [
        QueueOptions { concurrency_limit: Some(0), ..Default::default() },
        QueueOptions { group_concurrency: Some(-1), ..Default::default() },
        QueueOptions {
            rate_limit: Some(RateLimit { count: 0, period: Duration::from_secs(1), per_group: false }),
            ..Default::default()
        },
        QueueOptions {
            rate_limit: Some(RateLimit { count: 5, period: Duration::ZERO, per_group: false }),
            ..Default::default()
        },
    ] {
        let err = admin.create_queue_with("jobs", &options).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    }
    for bad in ["fast", "10/fortnight"] {
        let err = bad.parse::<RateLimit>().unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
    assert!(admin.list_queues().await.unwrap().is_empty());
    admin.create_queue("jobs").await.unwrap();
    let err = admin
        .update_queue("jobs", &QueueUpdate { concurrency_limit: Some(Some(-3)), ..Default::default() })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("-3"), "{err}");
    let producer = Producer::new(&db.config, "jobs").await.unwrap();
    for group in [String::new(), "x".repeat(129), "a\0b".to_string()] {
        let err = producer.enqueue_with(&json!(1), &EnqueueOptions::new().group(group)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
    assert_eq!(admin.queue_stats("jobs").await.unwrap().ready, 0);
    db.drop().await;
}

#[tokio::test]
async fn groups_one_at_a_time_in_order_and_fair() {
    let (db, admin) = TestDb::installed().await;
    let options = QueueOptions { group_concurrency: Some(1), ..Default::default() };
    admin.create_queue_with("jobs", &options).await.unwrap();
    let producer = Producer::new(&db.config, "jobs").await.unwrap();
    let a: Vec<_> = (0..1000).map(|i| json!(i)).collect();
    let sent = producer.enqueue_batch_with(&a, &EnqueueOptions::new().group("A")).await.unwrap();
    assert_eq!(sent[0].group.as_deref(), Some("A"));
    producer
        .enqueue_batch_with(&[json!("b0"), json!("b1")], &EnqueueOptions::new().group("B"))
        .await
        .unwrap();
    let consumer = Consumer::new(&db.config, "jobs").await.unwrap();
    let got = consumer.dequeue_batch(10).await.unwrap();
    let groups: Vec<_> = got.iter().map(|m| m.group.clone().unwrap()).collect();
    assert_eq!(groups, ["A", "B"]);
    assert_eq!(got[0].payload, json!(0));
    assert!(consumer.dequeue_batch(10).await.unwrap().is_empty());
    consumer.archive(&got[0], "completed").await.unwrap();
    let next = consumer.dequeue_batch(10).await.unwrap();
    assert_eq!(next.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(), [json!(1)]);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_is_exact_across_racing_consumers() {
    let (db, admin) = TestDb::installed().await;
    let options = QueueOptions { concurrency_limit: Some(5), ..Default::default() };
    admin.create_queue_with("jobs", &options).await.unwrap();
    let producer = Producer::new(&db.config, "jobs").await.unwrap();
    producer.enqueue_batch(&(0..200).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (config, taken) = (db.config.clone(), taken.clone());
        tasks.push(tokio::spawn(async move {
            let consumer = Consumer::new(&config, "jobs").await.unwrap();
            for _ in 0..4 {
                let got = consumer.dequeue_batch(3).await.unwrap();
                taken.fetch_add(got.len(), Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(taken.load(Ordering::SeqCst), 5);
    db.drop().await;
}

#[tokio::test]
async fn rate_limit_says_when_the_next_token_is_due() {
    let (db, admin) = TestDb::installed().await;
    let options = QueueOptions { rate_limit: Some("5/s".parse().unwrap()), ..Default::default() };
    admin.create_queue_with("jobs", &options).await.unwrap();
    let producer = Producer::new(&db.config, "jobs").await.unwrap();
    producer.enqueue_batch(&(0..20).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let consumer = Consumer::new(&db.config, "jobs").await.unwrap();
    assert_eq!(consumer.dequeue_batch(10).await.unwrap().len(), 5);
    let wait = consumer.retry_after().expect("throttled");
    assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
    tokio::time::sleep(wait).await;
    assert_eq!(consumer.dequeue_batch(10).await.unwrap().len(), 1);
    admin.update_queue("jobs", &QueueUpdate { rate_limit: Some(None), ..Default::default() }).await.unwrap();
    assert_eq!(consumer.dequeue_batch(10).await.unwrap().len(), 10);
    assert_eq!(consumer.retry_after(), None);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_worker_sleeps_until_the_next_token() {
    let (db, admin) = TestDb::installed().await;
    let options = QueueOptions { rate_limit: Some("20/s".parse().unwrap()), ..Default::default() };
    admin.create_queue_with("jobs", &options).await.unwrap();
    let producer = Producer::new(&db.config, "jobs").await.unwrap();
    producer.enqueue_batch(&(0..60).map(|i| json!(i)).collect::<Vec<_>>()).await.unwrap();
    let options =
        WorkerOptions { concurrency: 10, poll_interval: Duration::from_secs(5), ..Default::default() };
    let worker = Worker::new(&db.config, "jobs", options).await.unwrap();
    let stats = worker.stats();
    let stop = worker.stop_handle();
    let started = Instant::now();
    let task = tokio::spawn(async move {
        worker.run_until(|_m: Message| async { Ok::<_, JobError>(json!(null)) }, std::future::pending()).await
    });
    eventually(WAIT, "60 completions", || async {
        (stats.completed.load(Ordering::SeqCst) == 60).then_some(())
    })
    .await;
    let took = started.elapsed();
    // The bucket holds 20; the other 40 come at 20/s: not before 2 s; and
    // not after a 5 s poll either: the worker slept until the next token.
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_millis(4500), "{took:?}");
    stop.stop();
    task.await.unwrap().unwrap();
    db.drop().await;
}
