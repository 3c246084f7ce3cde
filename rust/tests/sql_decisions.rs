//! The decisions made once in SQL, called from Rust: `message_fail` (retry
//! with the backoff, or dead; fenced by lease), `worker_alive` (a pruned
//! worker registers again under its id) and `message_dequeue` filling its
//! batch past exhausted rows. tests/test_sql_decisions.py checks the same
//! through Python.

mod common;

use std::time::Duration;

use common::TestDb;
use pgqrs::internal::{Db, FailKind, Failure, Heartbeat};
use pgqrs::{Backoff, Consumer, ErrorKind, Message, Producer, QueueOptions};
use serde_json::json;
use uuid::Uuid;

const NO_JITTER: Backoff =
    Backoff { base: Duration::from_secs(2), max: Duration::from_secs(60), jitter: 0.0 };

fn failure(m: &Message) -> Failure {
    Failure {
        id: m.id,
        lease: m.lease.unwrap(),
        error: Some(json!({"e": m.id}).to_string()),
        delay: None,
        dead: false,
    }
}

#[tokio::test]
async fn message_fail_retries_with_the_backoff_or_buries_fenced_by_lease() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue_with("q", &QueueOptions { max_attempts: 3, ..Default::default() }).await.unwrap();
    let producer = Producer::new(&db.config, "q").await.unwrap();
    for i in 0..5 {
        producer.enqueue(&json!(i)).await.unwrap();
    }
    let consumer = Consumer::new(&db.config, "q").await.unwrap();
    let got = consumer.dequeue_batch(5).await.unwrap();
    assert_eq!(got.len(), 5);
    let raw = db.raw().await;
    let s = &db.schema;
    // The fifth has been delivered max_attempts times: dead whatever its delay.
    raw.execute(&format!("UPDATE \"{s}\".messages SET attempts = 3 WHERE id = $1"), &[&got[4].id])
        .await
        .unwrap();

    let calls = Db::open(&db.config, None).await.unwrap();
    let failures = vec![
        failure(&got[0]),
        Failure { delay: Some(Duration::from_secs(7)), ..failure(&got[1]) },
        Failure { dead: true, ..failure(&got[2]) },
        Failure { lease: Uuid::from_u128(0x1234_5678), ..failure(&got[3]) },
        Failure { delay: Some(Duration::from_secs(7)), ..failure(&got[4]) },
        Failure { id: i64::MAX, ..failure(&got[0]) },
    ];
    let out = calls.message_fail(&failures, NO_JITTER, Some("q")).await.unwrap();
    let summary: Vec<(i64, FailKind, Option<Duration>, Option<i32>)> =
        out.iter().map(|o| (o.id, o.outcome, o.delay, o.attempts)).collect();
    assert_eq!(
        summary,
        vec![
            (got[0].id, FailKind::Retried, Some(Duration::from_secs(2)), Some(1)),
            (got[1].id, FailKind::Retried, Some(Duration::from_secs(7)), Some(1)),
            (got[2].id, FailKind::Dead, None, Some(1)),
            (got[3].id, FailKind::LeaseLost, None, None),
            (got[4].id, FailKind::Dead, None, Some(3)),
            (i64::MAX, FailKind::NotFound, None, None),
        ]
    );
    // Retried: no lease, visible after the delay, the error kept as last_error.
    let row = raw
        .query_one(
            &format!(
                "SELECT lease IS NULL, extract(epoch FROM visible_at - now())::float8, last_error::text \
                 FROM \"{s}\".messages WHERE id = $1"
            ),
            &[&got[0].id],
        )
        .await
        .unwrap();
    let (released, wait, error): (bool, f64, String) = (row.get(0), row.get(1), row.get(2));
    assert!(released && (1.0..=2.0).contains(&wait), "{wait}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&error).unwrap(), json!({"e": got[0].id}));
    // Dead: archived with the given error; the lease-lost one is untouched.
    let dead = raw
        .query(&format!("SELECT id, status, error::text FROM \"{s}\".archive ORDER BY id"), &[])
        .await
        .unwrap();
    assert_eq!(dead.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(), vec![got[2].id, got[4].id]);
    assert!(dead.iter().all(|r| r.get::<_, String>(1) == "dead"));
    let untouched = raw
        .query_one(&format!("SELECT lease FROM \"{s}\".messages WHERE id = $1"), &[&got[3].id])
        .await
        .unwrap();
    assert_eq!(untouched.get::<_, Option<Uuid>>(0), got[3].lease);
    db.drop().await;
}

#[tokio::test]
async fn message_fail_backoff_doubles_is_capped_and_jittered() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue_with("q", &QueueOptions { max_attempts: 100, ..Default::default() }).await.unwrap();
    let producer = Producer::new(&db.config, "q").await.unwrap();
    let consumer = Consumer::new(&db.config, "q").await.unwrap();
    let calls = Db::open(&db.config, None).await.unwrap();
    let raw = db.raw().await;
    let s = &db.schema;
    let delay_after = |attempts: i32, backoff: Backoff| {
        let (producer, consumer, calls, raw) = (&producer, &consumer, &calls, &raw);
        async move {
            producer.enqueue(&json!(attempts)).await.unwrap();
            let m = consumer.dequeue().await.unwrap().unwrap();
            raw.execute(
                &format!("UPDATE \"{s}\".messages SET attempts = $2 WHERE id = $1"),
                &[&m.id, &attempts],
            )
            .await
            .unwrap();
            let out = calls.message_fail(&[failure(&m)], backoff, None).await.unwrap();
            assert_eq!((out[0].outcome, out[0].attempts), (FailKind::Retried, Some(attempts)));
            out[0].delay.unwrap().as_secs_f64()
        }
    };
    for (attempts, expected) in [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 60.0), (40, 60.0)] {
        assert_eq!(delay_after(attempts, NO_JITTER).await, expected, "attempt {attempts}");
    }
    let jittered = Backoff { base: Duration::from_secs(10), max: Duration::from_secs(1000), jitter: 0.25 };
    let mut seen = Vec::new();
    for _ in 0..8 {
        let d = delay_after(2, jittered).await;
        assert!((15.0..=25.0).contains(&d), "{d}");
        seen.push(d);
    }
    assert!(seen.iter().any(|d| *d != seen[0]), "jitter varies the delay: {seen:?}");

    // Bad backoffs fail before any round trip, naming the value.
    let m = consumer.dequeue().await.unwrap();
    assert!(m.is_none());
    let bad = Failure { id: 1, lease: Uuid::from_u128(0x1234_5678), error: None, delay: None, dead: false };
    let err = calls
        .message_fail(std::slice::from_ref(&bad), Backoff { jitter: 1.5, ..NO_JITTER }, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("1.5"), "{err}");
    let err = calls
        .message_fail(std::slice::from_ref(&bad), Backoff { max: Duration::from_secs(1), ..NO_JITTER }, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = calls.message_fail(&[bad.clone(), bad], NO_JITTER, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    db.drop().await;
}

#[tokio::test]
async fn worker_alive_registers_a_pruned_worker_again_under_its_id() {
    let (db, _admin) = TestDb::installed().await;
    let raw = db.raw().await;
    let s = &db.schema;
    let id: i64 = raw
        .query_one(
            &format!("INSERT INTO \"{s}\".workers (hostname, pid, queues, status) VALUES ('h', 1, '{{q}}', 'dead') RETURNING id"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let calls = Db::open(&db.config, None).await.unwrap();
    let queues = vec!["q".to_string(), "r".to_string()];
    // A worker marked dead comes back to life; not registered again.
    let beat = calls.worker_alive(id, "running", "h", 1, &queues, true).await.unwrap();
    assert_eq!(beat, Heartbeat { status: "running".into(), registered: false });
    // Pruned: registered again with the same id and what the heartbeat carries.
    raw.execute(&format!("DELETE FROM \"{s}\".workers WHERE id = $1"), &[&id]).await.unwrap();
    let beat = calls.worker_alive(id, "stopping", "host2", 42, &queues, false).await.unwrap();
    assert_eq!(beat, Heartbeat { status: "stopping".into(), registered: true });
    let row = raw
        .query_one(&format!("SELECT id, hostname, pid, queues, listening, status FROM \"{s}\".workers"), &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, String>(1), row.get::<_, i32>(2)),
        (id, "host2".to_string(), 42)
    );
    assert_eq!((row.get::<_, Vec<String>>(3), row.get::<_, bool>(4)), (queues.clone(), false));
    let beat = calls.worker_alive(id, "running", "host2", 42, &queues, false).await.unwrap();
    assert!(!beat.registered);
    let err = calls.worker_alive(id, "stopped", "h", 1, &queues, true).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    db.drop().await;
}

#[tokio::test]
async fn dequeue_fills_its_batch_past_exhausted_rows_in_one_call() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue_with("q", &QueueOptions { max_attempts: 1, ..Default::default() }).await.unwrap();
    let producer = Producer::new(&db.config, "q").await.unwrap();
    for p in [9, 8, 7, 6, 5] {
        producer
            .enqueue_with(&json!(p), &pgqrs::EnqueueOptions { priority: p, ..Default::default() })
            .await
            .unwrap();
    }
    // 9 and 7 were delivered once already (max_attempts 1): exhausted.
    let raw = db.raw().await;
    let s = &db.schema;
    raw.execute(&format!("UPDATE \"{s}\".messages SET attempts = 1 WHERE priority IN (9, 7)"), &[])
        .await
        .unwrap();
    let consumer = Consumer::new(&db.config, "q").await.unwrap();
    let got = consumer.dequeue_batch(3).await.unwrap();
    let payloads: Vec<i64> = got.iter().map(|m| m.payload.as_i64().unwrap()).collect();
    assert_eq!(payloads, vec![8, 6, 5]);
    let dead: i64 = raw
        .query_one(&format!("SELECT count(*) FROM \"{s}\".archive WHERE status = 'dead'"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 2);
    db.drop().await;
}
