//! Admin, Producer and Consumer against a real PostgreSQL.

mod common;

use std::time::Duration;

use common::{eventually, TestDb};
use pgqrs::{Admin, Config, Consumer, EnqueueOptions, ErrorKind, Message, MessageRef, Producer, QueueOptions};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

async fn setup() -> (TestDb, Admin, Producer, Consumer) {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue("tasks").await.unwrap();
    let producer = Producer::new(&db.config, "tasks").await.unwrap();
    let consumer = Consumer::new(&db.config, "tasks").await.unwrap();
    (db, admin, producer, consumer)
}

#[tokio::test]
async fn install_is_idempotent_verified_and_uninstallable() {
    let db = TestDb::new();
    let admin = Admin::new(&db.config).await.unwrap();
    let report = admin.verify().await.unwrap();
    assert!(!report.installed && !report.ok());
    let migrations: Vec<String> = pgqrs::migrations().unwrap().iter().map(|m| m.label()).collect();
    assert_eq!(migrations[0], "0001_init");
    for (i, m) in migrations.iter().enumerate() {
        assert!(m.starts_with(&format!("{:04}_", i + 1)), "contiguous: {migrations:?}");
    }
    let functions: Vec<String> = pgqrs::functions().unwrap().iter().map(|f| f.label()).collect();
    assert!(functions.contains(&"function message_dequeue".to_string()), "{functions:?}");
    let shipped: Vec<String> = migrations.iter().chain(&functions).cloned().collect();
    assert_eq!(report.missing, shipped);

    assert_eq!(admin.install().await.unwrap(), shipped);
    assert!(admin.install().await.unwrap().is_empty(), "second install is a no-op");
    let report = admin.verify().await.unwrap();
    assert!(report.ok(), "{}", report.describe());
    let latest = migrations.len() as i32;
    assert_eq!((report.current_version, report.latest_version), (latest, latest));

    // The ledger holds the sha256 of the file as shipped.
    let raw = db.raw().await;
    let row = raw
        .query_one(
            &format!("SELECT name, checksum FROM \"{}\".schema_migrations WHERE version = 1", db.schema),
            &[],
        )
        .await
        .unwrap();
    let shipped = &pgqrs::migrations().unwrap()[0];
    assert_eq!(row.get::<_, String>(0), "init");
    assert_eq!(row.get::<_, String>(1), shipped.checksum());

    // A tampered checksum shows up as modified.
    raw.batch_execute(&format!(
        "UPDATE \"{}\".schema_migrations SET checksum = 'x' WHERE version = 1",
        db.schema
    ))
    .await
    .unwrap();
    assert_eq!(admin.verify().await.unwrap().modified, vec!["0001_init".to_string()]);

    // Functions: a changed checksum is modified and re-created by install; a
    // dropped function is missing and created again.
    let fresh = &pgqrs::functions().unwrap()[0];
    let row = raw
        .query_one(
            &format!("SELECT checksum FROM \"{}\".schema_functions WHERE name = $1", db.schema),
            &[&fresh.name],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), fresh.checksum());
    raw.batch_execute(&format!(
        "UPDATE \"{0}\".schema_functions SET checksum = 'x' WHERE name = 'message_dequeue'; \
         DROP FUNCTION \"{0}\".message_fail",
        db.schema
    ))
    .await
    .unwrap();
    let report = admin.verify().await.unwrap();
    assert_eq!(report.modified, ["0001_init", "function message_dequeue"]);
    assert_eq!(report.missing, ["function message_fail"]);
    assert_eq!(admin.install().await.unwrap(), ["function message_dequeue", "function message_fail"]);
    assert!(admin.verify().await.unwrap().missing.is_empty());

    admin.uninstall().await.unwrap();
    assert!(!admin.verify().await.unwrap().installed);
    let err = admin.create_queue("tasks").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaNotInstalled, "{err}");
    db.drop().await;
}

#[tokio::test]
async fn concurrent_installs_serialise() {
    let db = TestDb::new();
    let a = Admin::new(&db.config).await.unwrap();
    let b = Admin::new(&db.config).await.unwrap();
    let (ra, rb) = tokio::join!(a.install(), b.install());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let shipped = pgqrs::migrations().unwrap().len() + pgqrs::functions().unwrap().len();
    assert!(
        ra.len() + rb.len() == shipped && (ra.is_empty() || rb.is_empty()),
        "exactly one applied the migrations: {ra:?} {rb:?}"
    );
    assert!(a.verify().await.unwrap().ok());
    db.drop().await;
}

#[tokio::test]
async fn queue_management() {
    let (db, admin) = TestDb::installed().await;
    let q = admin
        .create_queue_with(
            "emails",
            &QueueOptions {
                visibility_timeout: Duration::from_secs(5),
                max_attempts: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((q.name.as_str(), q.visibility_timeout, q.max_attempts, q.paused), ("emails", 5.0, 3, false));
    assert_eq!(admin.create_queue("emails").await.unwrap_err().kind(), ErrorKind::QueueExists);
    let again = admin
        .create_queue_with("emails", &QueueOptions { exist_ok: true, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(again.max_attempts, 3);
    assert_eq!(admin.create_queue("bad name").await.unwrap_err().kind(), ErrorKind::InvalidQueueName);
    let err = admin
        .create_queue_with("x", &QueueOptions { max_attempts: 0, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    admin.create_queue("a").await.unwrap();
    let names: Vec<String> = admin.list_queues().await.unwrap().into_iter().map(|q| q.name).collect();
    assert_eq!(names, ["a", "emails"]);

    admin.pause_queue("emails").await.unwrap();
    assert!(admin.get_queue("emails").await.unwrap().paused);
    admin.resume_queue("emails").await.unwrap();
    assert!(!admin.queue_stats("emails").await.unwrap().paused);

    admin.delete_queue("a").await.unwrap();
    for err in [
        admin.delete_queue("a").await.unwrap_err(),
        admin.get_queue("a").await.unwrap_err(),
        admin.purge_queue("a").await.unwrap_err(),
        admin.queue_stats("a").await.unwrap_err(),
        admin.pause_queue("a").await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::QueueNotFound, "{err}");
        assert!(err.to_string().contains("create_queue"), "names the fix: {err}");
    }
    db.drop().await;
}

#[tokio::test]
async fn seed_flow_enqueue_dequeue_archive_by_id() {
    let (db, admin, producer, consumer) = setup().await;
    let payload = json!({"task": "send_email", "to": "user@example.com"});
    let message = producer.enqueue(&payload).await.unwrap();
    assert!(message.inserted && message.lease.is_none() && message.attempts == 0);
    assert_eq!(message.headers, json!({}));

    let msg = consumer.dequeue().await.unwrap().expect("a message");
    assert_eq!((msg.id, &msg.payload, msg.attempts), (message.id, &payload, 1));
    assert!(msg.lease.is_some() && msg.dequeued_at.is_some());
    assert!(consumer.dequeue().await.unwrap().is_none(), "leased messages are invisible");

    consumer.archive(msg.id, "completed").await.unwrap();
    let archived = admin.list_archive(Some("tasks"), None, 10).await.unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!((archived[0].id, archived[0].status.as_str()), (msg.id, "completed"));
    let stats = admin.queue_stats("tasks").await.unwrap();
    assert_eq!((stats.ready, stats.in_flight, stats.delayed), (0, 0, 0));
    assert_eq!(stats.archived.get("completed"), Some(&1));

    // The id is forgotten once settled.
    let err = consumer.archive(msg.id, "completed").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseNotHeld);
    assert_eq!(err.ids(), &[msg.id]);
    db.drop().await;
}

#[tokio::test]
async fn stale_lease_is_refused_and_leaves_the_row() {
    let (db, admin, producer, first) = setup().await;
    let second = Consumer::new(&db.config, "tasks").await.unwrap();
    let sent = producer.enqueue(&json!({"n": 1})).await.unwrap();
    let stale = first.dequeue_with_visibility_timeout(Duration::from_millis(300)).await.unwrap().unwrap();
    let taken: Message = eventually(WAIT, "lease expiry", || async {
        second.dequeue_with_visibility_timeout(Duration::from_secs(30)).await.unwrap()
    })
    .await;
    assert_eq!((taken.id, taken.attempts), (sent.id, 2));
    assert_ne!(taken.lease, stale.lease);

    for err in [
        first.archive(&stale, "completed").await.unwrap_err(),
        first.delete(&stale).await.unwrap_err(),
        first.release(&stale).await.unwrap_err(),
        first.extend(&stale, Duration::from_secs(5)).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::LeaseExpired, "{err}");
        assert_eq!(err.ids(), &[sent.id]);
    }
    assert_eq!(admin.queue_stats("tasks").await.unwrap().in_flight, 1, "row untouched");
    second.archive(taken.id, "completed").await.unwrap();
    db.drop().await;
}

#[tokio::test]
async fn batches_dedup_and_partial_fencing() {
    let (db, _admin, producer, consumer) = setup().await;
    let sent = producer
        .enqueue_batch_with(
            &[json!(1), json!(2), json!(3)],
            &EnqueueOptions::new().dedup_keys(vec![Some("a".into()), None, Some("c".into())]),
        )
        .await
        .unwrap();
    assert_eq!(sent.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(), [json!(1), json!(2), json!(3)]);
    assert!(sent.iter().all(|m| m.inserted));

    let dup = producer.enqueue_with(&json!("other"), &EnqueueOptions::new().dedup_key("a")).await.unwrap();
    assert_eq!((dup.id, dup.inserted, &dup.payload), (sent[0].id, false, &json!(1)));
    let err = producer
        .enqueue_batch_with(
            &[1, 2],
            &EnqueueOptions::new().dedup_keys(vec![Some("k".into()), Some("k".into())]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(producer.enqueue_batch::<Value>(&[]).await.is_err());

    let got = consumer.dequeue_batch(10).await.unwrap();
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), sent.iter().map(|m| m.id).collect::<Vec<_>>());

    // Delete one behind the consumer's back: the batch archives the others.
    let raw = db.raw().await;
    raw.execute(&format!("DELETE FROM \"{}\".messages WHERE id = $1", db.schema), &[&got[1].id])
        .await
        .unwrap();
    let err = consumer.archive_batch(&got, "completed").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseExpired);
    assert_eq!(err.ids(), &[got[1].id]);
    assert_eq!(err.succeeded(), &[got[0].id, got[2].id]);

    // Archived: its dedup key is free again.
    let fresh = producer.enqueue_with(&json!("again"), &EnqueueOptions::new().dedup_key("a")).await.unwrap();
    assert!(fresh.inserted && fresh.id != sent[0].id);
    db.drop().await;
}

#[tokio::test]
async fn delay_available_at_priority_and_headers() {
    let (db, admin, producer, consumer) = setup().await;
    let raw = db.raw().await;
    let db_now: chrono::DateTime<chrono::Utc> = raw.query_one("SELECT now()", &[]).await.unwrap().get(0);
    producer
        .enqueue_with(&json!("later"), &EnqueueOptions::new().delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    producer
        .enqueue_with(&json!("at"), &EnqueueOptions::new().available_at(db_now + chrono::Duration::hours(1)))
        .await
        .unwrap();
    let low = producer.enqueue(&json!("low")).await.unwrap();
    let high = producer
        .enqueue_with(&json!("high"), &EnqueueOptions::new().priority(10).headers(json!({"trace": "t-1"})))
        .await
        .unwrap();
    let stats = admin.queue_stats("tasks").await.unwrap();
    assert_eq!((stats.ready, stats.delayed), (2, 2));

    let got = consumer.dequeue_batch(10).await.unwrap();
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), [high.id, low.id]);
    assert_eq!(got[0].headers, json!({"trace": "t-1"}));
    let err = producer.enqueue_with(&json!(1), &EnqueueOptions::new().headers(json!([1]))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Payload);
    db.drop().await;
}

#[tokio::test]
async fn extend_release_and_dead_after_max_attempts() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue_with("q", &QueueOptions { max_attempts: 2, ..Default::default() }).await.unwrap();
    let producer = Producer::new(&db.config, "q").await.unwrap();
    let consumer = Consumer::new(&db.config, "q").await.unwrap();
    let sent = producer.enqueue(&json!({"job": 1})).await.unwrap();

    let m = consumer.dequeue().await.unwrap().unwrap();
    let until = consumer.extend(m.id, Duration::from_secs(600)).await.unwrap();
    assert!(until > m.visible_until);
    consumer.release_with(m.id, Duration::ZERO, Some(&json!({"error": "boom"}))).await.unwrap();

    let m = consumer.dequeue().await.unwrap().unwrap();
    assert_eq!((m.attempts, m.last_error.clone()), (2, Some(json!({"error": "boom"}))));
    consumer.release(&m).await.unwrap();

    // Delivered max_attempts times: the next dequeue archives it as dead.
    assert!(consumer.dequeue().await.unwrap().is_none());
    let dead = admin.list_archive(Some("q"), Some("dead"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, sent.id);
    assert_eq!(dead[0].error.as_ref().unwrap()["reason"], json!("max_attempts exceeded"));

    // Redrive puts it back with its attempts reset.
    assert_eq!(admin.redrive("q", "dead", None).await.unwrap(), vec![sent.id]);
    let m = consumer.dequeue().await.unwrap().unwrap();
    assert_eq!((m.id, m.attempts), (sent.id, 1));
    consumer.delete(m.id).await.unwrap();
    assert_eq!(admin.queue_stats("q").await.unwrap().ready, 0);
    db.drop().await;
}

#[tokio::test]
async fn pause_purge_and_peek() {
    let (db, admin, producer, consumer) = setup().await;
    producer.enqueue_batch(&[json!(1), json!(2)]).await.unwrap();
    admin.pause_queue("tasks").await.unwrap();
    assert!(consumer.dequeue().await.unwrap().is_none(), "paused queues deliver nothing");
    let peeked = admin.peek("tasks", 10).await.unwrap();
    assert_eq!(peeked.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(), ["ready", "ready"]);
    admin.resume_queue("tasks").await.unwrap();
    assert!(consumer.dequeue().await.unwrap().is_some());
    assert_eq!(admin.purge_queue("tasks").await.unwrap(), 2);
    assert_eq!(admin.purge_archive(Duration::ZERO, None, None).await.unwrap(), 0);
    db.drop().await;
}

#[tokio::test]
async fn enqueue_joins_the_callers_transaction() {
    let (db, admin, producer, _consumer) = setup().await;
    let mut raw = db.raw().await;
    let tx = raw.transaction().await.unwrap();
    producer.enqueue_in(&tx, &json!("rolled back"), &EnqueueOptions::new()).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(admin.queue_stats("tasks").await.unwrap().ready, 0);

    let tx = raw.transaction().await.unwrap();
    let sent =
        producer.enqueue_batch_in(&tx, &[json!("a"), json!("b")], &EnqueueOptions::new()).await.unwrap();
    assert_eq!(admin.queue_stats("tasks").await.unwrap().ready, 0, "invisible before commit");
    tx.commit().await.unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(admin.queue_stats("tasks").await.unwrap().ready, 2);
    db.drop().await;
}

#[tokio::test]
async fn bad_input_gets_typed_errors() {
    let (db, _admin, producer, consumer) = setup().await;
    let err = producer.enqueue(&json!({"s": "nul \u{0} here"})).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Payload);
    let small = db.config.clone().with_max_payload_bytes(10);
    let p = Producer::new(&small, "tasks").await.unwrap();
    assert_eq!(p.enqueue(&json!("x".repeat(20))).await.unwrap_err().kind(), ErrorKind::Payload);

    let missing = Producer::new(&db.config, "missing").await.unwrap();
    assert_eq!(missing.enqueue(&json!(1)).await.unwrap_err().kind(), ErrorKind::QueueNotFound);
    let missing = Consumer::new(&db.config, "missing").await.unwrap();
    assert_eq!(missing.dequeue().await.unwrap_err().kind(), ErrorKind::QueueNotFound);
    let err = Producer::new(&db.config, "no/slash").await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidQueueName);
    assert_eq!(consumer.dequeue_batch(0).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(consumer.archive(1, "Bad Status").await.unwrap_err().kind(), ErrorKind::LeaseNotHeld);
    producer.enqueue(&json!(1)).await.unwrap();
    let m = consumer.dequeue().await.unwrap().unwrap();
    assert_eq!(consumer.archive(&m, "Bad Status").await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    let forged = MessageRef::with_lease(m.id, uuid::Uuid::nil());
    assert_eq!(consumer.archive(forged, "completed").await.unwrap_err().kind(), ErrorKind::LeaseExpired);

    let unreachable = Config::from_dsn("postgresql://nobody@/db?host=/nonexistent/dir")
        .unwrap()
        .with_connect_timeout(Duration::from_secs(2));
    let err = Admin::new(&unreachable).await.err().expect("cannot connect");
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    db.drop().await;
}

#[tokio::test]
async fn typed_payloads_and_named_statements() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Email {
        to: String,
        retries: u8,
    }
    let (db, _admin) = TestDb::installed().await;
    let config = db.config.clone().with_prepare_statements(true);
    let admin = Admin::new(&config).await.unwrap();
    admin.create_queue("typed").await.unwrap();
    let producer = Producer::new(&config, "typed").await.unwrap();
    let consumer = Consumer::new(&config, "typed").await.unwrap();
    let email = Email { to: "a@b.c".into(), retries: 2 };
    for _ in 0..3 {
        producer.enqueue(&email).await.unwrap();
    }
    for _ in 0..3 {
        let m = consumer.dequeue().await.unwrap().unwrap();
        assert_eq!(m.payload_as::<Email>().unwrap(), email);
        assert_eq!(m.payload_as::<Vec<u8>>().unwrap_err().kind(), ErrorKind::Payload);
        consumer.archive(m.id, "completed").await.unwrap();
    }
    db.drop().await;
}

#[tokio::test]
async fn big_numbers_and_unicode_round_trip_exactly() {
    let (db, _admin, producer, consumer) = setup().await;
    let text = r#"{"big":123456789012345678901234567890,"neg":-98765432109876543210,"dec":3.14159265358979323846264338327950288,"s":"héllo ✓ 😀 \"q\" \\ \n","nested":{"a":[1,[2,[3,{"b":null}]]],"t":true}}"#;
    let payload: Value = serde_json::from_str(text).unwrap();
    producer.enqueue(&payload).await.unwrap();
    let got = consumer.dequeue().await.unwrap().unwrap();
    assert_eq!(got.payload, payload);
    assert_eq!(got.payload["big"].to_string(), "123456789012345678901234567890");
    db.drop().await;
}

#[tokio::test]
async fn workers_are_listed_and_reaped() {
    let (db, admin) = TestDb::installed().await;
    let raw = db.raw().await;
    raw.execute(
        &format!(
            "INSERT INTO \"{}\".workers (hostname, pid, queues, heartbeat_at) VALUES ('h', 1, '{{q}}', now() - interval '1 hour')",
            db.schema
        ),
        &[],
    )
    .await
    .unwrap();
    let workers = admin.list_workers().await.unwrap();
    assert_eq!((workers.len(), workers[0].status.as_str()), (1, "running"));
    let (dead, pruned) =
        admin.reap_workers(Duration::from_secs(60), Duration::from_secs(3600)).await.unwrap();
    assert_eq!((dead, pruned), (1, 0));
    assert_eq!(admin.list_workers().await.unwrap()[0].status, "dead");
    db.drop().await;
}

/// Behind pgBouncer in transaction mode a named prepared statement made on one
/// server connection is missing on the next: by default pgqrs leaves none.
#[tokio::test]
async fn no_named_prepared_statements_unless_asked() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue("tasks").await.unwrap();
    for (prepare, expect_named) in [(false, false), (true, true)] {
        let config = db.config.clone().with_pool_max_size(1).with_prepare_statements(prepare);
        let pool = pgqrs::make_pool(&config).unwrap();
        let producer = Producer::with_pool(&config, "tasks", pool.clone()).await.unwrap();
        let consumer = Consumer::with_pool(&config, "tasks", pool.clone()).await.unwrap();
        producer.enqueue(&json!(1)).await.unwrap();
        let m = consumer.dequeue().await.unwrap().unwrap();
        consumer.archive(m.id, "completed").await.unwrap();
        // The pool has one connection: the one every call above used. (Asked
        // with an unnamed statement, so the question does not count itself.)
        let client = pool.get().await.unwrap();
        let named: i64 =
            client.query_typed("SELECT count(*) FROM pg_prepared_statements", &[]).await.unwrap()[0].get(0);
        assert_eq!(named > 0, expect_named, "prepare_statements={prepare}: {named} named statement(s)");
    }
    db.drop().await;
}

/// Issue 15, fault 11: a `dequeue()` future dropped in `tokio::time::timeout`
/// (or `select!`) while its statement waits on a lock. Before: the statement
/// still ran once the lock was gone, and its messages stayed leased, their
/// attempt charged, until the lease expired. Now the round trip finishes in a
/// task of its own and gives what it leased back, the attempt refunded.
#[tokio::test]
async fn a_dropped_dequeue_gives_its_messages_back_with_the_attempt_refunded() {
    let (db, _admin, producer, consumer) = setup().await;
    producer.enqueue_batch(&[json!({"n": 1}), json!({"n": 2})]).await.unwrap();
    let raw = db.raw().await;
    raw.batch_execute(&format!("BEGIN; LOCK TABLE \"{}\".queues IN ACCESS EXCLUSIVE MODE", db.schema))
        .await
        .unwrap();
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        consumer.dequeue_batch_with(2, Some(Duration::from_secs(300))),
    )
    .await;
    assert!(cut.is_err(), "the dequeue waits on the lock");
    raw.batch_execute("COMMIT").await.unwrap();
    let sql = format!(
        "SELECT count(*) FROM \"{}\".messages WHERE lease IS NULL AND attempts = 0 AND visible_at <= now() \
         AND dequeued_at IS NOT NULL",
        db.schema
    );
    // Leased once the lock is gone, then given back.
    let leased_then_given_back = format!("SELECT count(*) FROM \"{}\".archive", db.schema);
    eventually(WAIT, "both messages ready again, attempts refunded", || async {
        let n: i64 = raw.query_one(&sql, &[]).await.unwrap().get(0);
        (n == 2).then_some(())
    })
    .await;
    let archived: i64 = raw.query_one(&leased_then_given_back, &[]).await.unwrap().get(0);
    assert_eq!(archived, 0);
    let again = consumer.dequeue_batch(2).await.unwrap();
    assert_eq!(again.iter().map(|m| m.attempts).collect::<Vec<_>>(), [1, 1]);
    db.drop().await;
}
