//! Transactional enqueue on an sqlx executor (feature `sqlx`): the same
//! message_enqueue statement, committed or rolled back with the caller's writes.
#![cfg(feature = "sqlx")]

mod common;

use common::TestDb;
use pgqrs::{EnqueueOptions, ErrorKind, Producer, Task};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize, Deserialize)]
struct Bill {
    account: i64,
}

impl Task for Bill {
    const NAME: &'static str = "bill";
    const QUEUE: &'static str = "billing";
}

/// The test server for sqlx (whose URL parser wants a host; the test DSN may name a socket directory).
fn sqlx_options(config: &pgqrs::Config) -> sqlx::postgres::PgConnectOptions {
    use pgqrs::tokio_postgres::config::Host;
    let pg = config.pg_config();
    let mut o = sqlx::postgres::PgConnectOptions::new_without_pgpass();
    match pg.get_hosts().first() {
        Some(Host::Tcp(host)) => o = o.host(host),
        #[cfg(unix)]
        Some(Host::Unix(dir)) => o = o.socket(dir),
        _ => {}
    }
    if let Some(port) = pg.get_ports().first() {
        o = o.port(*port);
    }
    if let Some(user) = pg.get_user() {
        o = o.username(user);
    }
    if let Some(password) = pg.get_password() {
        o = o.password(std::str::from_utf8(password).unwrap());
    }
    if let Some(db) = pg.get_dbname() {
        o = o.database(db);
    }
    o
}

async fn ready(admin: &pgqrs::Admin) -> i64 {
    admin.queue_stats("billing").await.unwrap().ready
}

#[tokio::test]
async fn enqueue_on_an_sqlx_transaction_commits_and_rolls_back_with_it() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue("billing").await.unwrap();
    let producer = Producer::new(&db.config, "billing").await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(sqlx_options(&db.config))
        .await
        .unwrap();
    let accounts = format!("\"{}\".accounts", db.schema);
    sqlx::query(&format!("CREATE TABLE {accounts} (id bigint, state text)")).execute(&pool).await.unwrap();

    // Rolled back: neither the caller's row nor the message.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {accounts} VALUES (1, 'billing')")).execute(&mut *tx).await.unwrap();
    let options = EnqueueOptions::new().priority(3).dedup_key("bill-1").headers(json!({"k": "v"}));
    let m = producer.enqueue_sqlx(&mut *tx, &json!({"bill": 1}), &options).await.unwrap();
    assert!(m.inserted);
    assert_eq!((m.queue.as_str(), m.priority, m.dedup_key.as_deref()), ("billing", 3, Some("bill-1")));
    assert_eq!((m.payload.clone(), m.headers.clone()), (json!({"bill": 1}), json!({"k": "v"})));
    tx.rollback().await.unwrap();
    assert_eq!(ready(&admin).await, 0);

    // Committed: the row and every message, single, batch and task.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {accounts} VALUES (1, 'billing')")).execute(&mut *tx).await.unwrap();
    let one = producer.enqueue_sqlx(&mut *tx, &json!({"bill": 1}), &options).await.unwrap();
    let again = producer.enqueue_sqlx(&mut *tx, &json!({"bill": 1}), &options).await.unwrap();
    assert_eq!((again.id, again.inserted), (one.id, false), "the dedup key holds inside the transaction");
    let batch =
        producer.enqueue_batch_sqlx(&mut *tx, &[json!(1), json!(2)], &EnqueueOptions::new()).await.unwrap();
    assert_eq!(batch.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(), [json!(1), json!(2)]);
    let task =
        producer.enqueue_task_sqlx(&mut *tx, &Bill { account: 1 }, &EnqueueOptions::new()).await.unwrap();
    assert_eq!(
        (task.headers.clone(), task.payload.clone()),
        (json!({"pgqrs-task": "bill"}), json!({"account": 1}))
    );
    assert_eq!(ready(&admin).await, 0, "not visible before the commit");
    tx.commit().await.unwrap();
    assert_eq!(ready(&admin).await, 4);

    // On the pool itself, outside a transaction.
    producer.enqueue_sqlx(&pool, &json!(5), &EnqueueOptions::new()).await.unwrap();
    assert_eq!(ready(&admin).await, 5);

    // The same checks and error kinds as the other enqueues.
    let missing = Producer::new(&db.config, "missing").await.unwrap();
    let err = missing.enqueue_sqlx(&pool, &json!(1), &EnqueueOptions::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QueueNotFound, "{err}");
    let err = producer.enqueue_sqlx(&pool, &json!("nul \u{0}"), &EnqueueOptions::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Payload, "{err}");
    let elsewhere = db.config.clone().with_schema(&format!("{}_none", db.schema));
    let uninstalled = Producer::new(&elsewhere, "billing").await.unwrap();
    let err = uninstalled.enqueue_sqlx(&pool, &json!(1), &EnqueueOptions::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaNotInstalled, "{err}");
    pool.close().await;
    db.drop().await;
}
