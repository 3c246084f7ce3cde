//! Typed errors for values PostgreSQL would refuse or store wrongly (issue 15, Why 9 and 12):
//! the same rules as Python's tests/test_security_errors.py.

mod common;

use std::time::Duration;

use common::TestDb;
use pgqrs::{Consumer, ErrorKind, Producer, QueueOptions};
use serde_json::json;

#[tokio::test]
async fn a_sub_microsecond_duration_is_invalid_not_a_check_violation() {
    let (db, admin) = TestDb::installed().await;
    let options = QueueOptions { visibility_timeout: Duration::from_nanos(1), ..QueueOptions::default() };
    let err = admin.create_queue_with("vt", &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("at least 0.000001 seconds"), "{err}");
    admin.create_queue("tasks").await.unwrap();
    let consumer = Consumer::new(&db.config, "tasks").await.unwrap();
    let err = consumer.dequeue_with_visibility_timeout(Duration::from_nanos(999)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let one_us = QueueOptions { visibility_timeout: Duration::from_micros(1), ..QueueOptions::default() };
    admin.create_queue_with("vt", &one_us).await.unwrap();
    db.drop().await;
}

#[tokio::test]
async fn an_unknown_archive_status_is_refused_with_the_valid_ones() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue("tasks").await.unwrap();
    let producer = Producer::new(&db.config, "tasks").await.unwrap();
    let consumer = Consumer::new(&db.config, "tasks").await.unwrap();
    producer.enqueue(&json!({"a": 1})).await.unwrap();
    let msg = consumer.dequeue().await.unwrap().unwrap();
    let err = consumer.archive(&msg, "donez").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("'completed', 'failed', 'dead'"), "{err}");
    let err = admin.list_archive(Some("tasks"), Some("donez"), 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    consumer.archive(&msg, "failed").await.unwrap();
    let archived = admin.list_archive(Some("tasks"), None, 10).await.unwrap();
    assert_eq!(archived.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(), ["failed"]);
    db.drop().await;
}

#[tokio::test]
async fn archiving_twice_says_the_message_is_gone_not_that_the_lease_expired() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue("tasks").await.unwrap();
    let producer = Producer::new(&db.config, "tasks").await.unwrap();
    let consumer = Consumer::new(&db.config, "tasks").await.unwrap();
    producer.enqueue(&json!({"a": 1})).await.unwrap();
    let msg = consumer.dequeue().await.unwrap().unwrap();
    consumer.archive(&msg, "completed").await.unwrap();
    let err = consumer.archive(&msg, "completed").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseExpired, "{err}");
    let text = err.to_string();
    assert!(text.contains("already archived or deleted"), "{text}");
    assert!(!text.contains("visibility_timeout") && !text.contains("redelivered"), "{text}");
    db.drop().await;
}
