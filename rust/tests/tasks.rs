//! Tasks (a kind name and a serde type per job), routed by the worker; JobError
//! conversions; payloads that do not decode are dead at once.

mod common;

use std::time::Duration;

use common::{eventually, TestDb};
use pgqrs::{
    Admin, ArchivedMessage, Backoff, EnqueueOptions, ErrorKind, JobError, Message, Producer, QueueOptions,
    Task, Worker, WorkerOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Add {
    a: i64,
    b: i64,
}

impl Task for Add {
    const NAME: &'static str = "add";
    const QUEUE: &'static str = "math";
}

#[derive(Debug, Serialize, Deserialize)]
struct Greet {
    name: String,
}

impl Task for Greet {
    const NAME: &'static str = "greet";
    const QUEUE: &'static str = "math";
    fn options(&self) -> EnqueueOptions {
        EnqueueOptions::new().priority(7)
    }
}

/// A task of a queue the test worker does not serve.
#[derive(Debug, Serialize, Deserialize)]
struct Elsewhere {}

impl Task for Elsewhere {
    const NAME: &'static str = "elsewhere";
    const QUEUE: &'static str = "other";
}

/// A task that fails through anyhow (retried, then dead by max_attempts).
#[derive(Debug, Serialize, Deserialize)]
struct Flaky {
    n: i64,
}

impl Task for Flaky {
    const NAME: &'static str = "flaky";
    const QUEUE: &'static str = "math";
}

fn quick() -> WorkerOptions {
    WorkerOptions {
        concurrency: 4,
        poll_interval: Duration::from_millis(50),
        backoff: Backoff { base: Duration::from_millis(20), max: Duration::from_millis(50), jitter: 0.0 },
        ..WorkerOptions::default()
    }
}

async fn setup() -> (TestDb, Admin, Producer) {
    let (db, admin) = TestDb::installed().await;
    let options = QueueOptions { max_attempts: 2, ..QueueOptions::default() };
    admin.create_queue_with("math", &options).await.unwrap();
    let producer = Producer::new(&db.config, "math").await.unwrap();
    (db, admin, producer)
}

async fn archived(admin: &Admin, n: usize) -> Vec<ArchivedMessage> {
    eventually(WAIT, "the messages archived", || async {
        let rows = admin.list_archive(Some("math"), None, 100).await.unwrap();
        (rows.len() >= n).then_some(rows)
    })
    .await
}

fn by_id(rows: &[ArchivedMessage], id: i64) -> &ArchivedMessage {
    rows.iter().find(|r| r.id == id).expect("archived")
}

fn error_type(row: &ArchivedMessage) -> &str {
    row.error.as_ref().and_then(|e| e["type"].as_str()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_routed_by_name_and_plain_messages_to_the_plain_handler() {
    let (db, admin, producer) = setup().await;
    let add = producer.enqueue_task(&Add { a: 2, b: 3 }).await.unwrap();
    assert_eq!(add.headers, json!({"pgqrs-task": "add"}));
    assert_eq!(add.payload, json!({"a": 2, "b": 3}));
    let greet = producer.enqueue_task(&Greet { name: "Ada".into() }).await.unwrap();
    assert_eq!(greet.priority, 7, "the task's own options");
    let plain = producer.enqueue(&json!({"plain": true})).await.unwrap();
    // Sent as Python's Producer sends a task: the header and the arguments by name.
    let by_wire = producer
        .enqueue_with(&json!({"a": 40, "b": 2}), &EnqueueOptions::new().headers(json!({"pgqrs-task": "add"})))
        .await
        .unwrap();

    let mut worker = Worker::new(&db.config, ["math"], quick()).await.unwrap();
    worker
        .task::<Add, _>(|args: Add, _msg: Message| async move { Ok::<_, JobError>(args.a + args.b) })
        .task::<Greet, _>(|args: Greet, msg: Message| async move {
            Ok::<_, JobError>(format!("hello {} (attempt {})", args.name, msg.attempts))
        });
    let stop = worker.stop_handle();
    let run = tokio::spawn(async move {
        worker
            .run_until(
                |msg: Message| async move { Ok::<_, JobError>(json!({"plain": msg.payload})) },
                std::future::pending(),
            )
            .await
    });
    let rows = archived(&admin, 4).await;
    stop.stop();
    run.await.unwrap().unwrap();
    assert!(rows.iter().all(|r| r.status == "completed"), "{rows:?}");
    assert_eq!(by_id(&rows, add.id).result, Some(json!(5)));
    assert_eq!(by_id(&rows, by_wire.id).result, Some(json!(42)));
    assert_eq!(by_id(&rows, greet.id).result, Some(json!("hello Ada (attempt 1)")));
    assert_eq!(by_id(&rows, plain.id).result, Some(json!({"plain": {"plain": true}})));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tasks_and_payloads_that_do_not_decode_are_dead_at_once() {
    let (db, admin, producer) = setup().await;
    let header = |name: &str| EnqueueOptions::new().headers(json!({"pgqrs-task": name}));
    let unknown = producer.enqueue_with(&json!({}), &header("nobody")).await.unwrap();
    let bad = producer.enqueue_with(&json!({"a": "two", "b": 3}), &header("add")).await.unwrap();
    let not_a_name = producer
        .enqueue_with(&json!({}), &EnqueueOptions::new().headers(json!({"pgqrs-task": 7})))
        .await
        .unwrap();
    let plain = producer.enqueue(&json!({"no": "header"})).await.unwrap();
    // A plain handler that decodes the payload: a pgqrs Payload error gives up too.
    let mut worker = Worker::new(&db.config, ["math"], quick()).await.unwrap();
    worker.task::<Add, _>(|args: Add, _msg: Message| async move { Ok::<_, JobError>(args.a + args.b) });
    let stop = worker.stop_handle();
    let run = tokio::spawn(async move {
        worker
            .run_until(
                |msg: Message| async move {
                    let args: Add = msg.payload_as()?;
                    Ok::<_, JobError>(args.a)
                },
                std::future::pending(),
            )
            .await
    });
    let rows = archived(&admin, 4).await;
    stop.stop();
    run.await.unwrap().unwrap();
    for (m, kind, text) in [
        (&unknown, "pgqrs.UnknownTask", "names task \"nobody\", which has no handler"),
        (&bad, "pgqrs.PayloadError", "does not decode as the arguments of task \"add\""),
        (&not_a_name, "pgqrs.Abort", "which is not a task name"),
        (&plain, "pgqrs.PayloadError", "does not decode as"),
    ] {
        let row = by_id(&rows, m.id);
        assert_eq!((row.status.as_str(), row.attempts), ("dead", 1), "{row:?}");
        assert_eq!(error_type(row), kind, "{row:?}");
        let message = row.error.as_ref().unwrap()["message"].as_str().unwrap();
        assert!(message.contains(text), "{message}");
    }
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_tasks_alone_and_errors_from_anyhow_are_retried() {
    let (db, admin, producer) = setup().await;
    let flaky = producer.enqueue_task(&Flaky { n: 1 }).await.unwrap();
    let plain = producer.enqueue(&json!({"no": "task"})).await.unwrap();
    let mut worker = Worker::new(&db.config, ["math"], quick()).await.unwrap();
    worker.task::<Flaky, _>(|args: Flaky, _msg: Message| async move {
        let failing: anyhow::Result<()> = Err(anyhow::anyhow!("flaky {} failed", args.n));
        failing?;
        Ok::<_, JobError>(())
    });
    let stop = worker.stop_handle();
    let run = tokio::spawn(async move { worker.run_tasks_until(std::future::pending()).await });
    let rows = archived(&admin, 2).await;
    stop.stop();
    run.await.unwrap().unwrap();
    let row = by_id(&rows, flaky.id);
    assert_eq!((row.status.as_str(), row.attempts), ("dead", 2), "retried until max_attempts: {row:?}");
    assert_eq!(row.error.as_ref().unwrap()["message"], json!("flaky 1 failed"));
    assert_eq!(error_type(row), "anyhow::Error");
    let row = by_id(&rows, plain.id);
    assert_eq!((row.status.as_str(), row.attempts, error_type(row)), ("dead", 1, "pgqrs.UnknownTask"));
    db.drop().await;
}

#[tokio::test]
async fn bad_registrations_and_enqueues_are_refused() {
    let (db, _admin, producer) = setup().await;
    let err = producer.enqueue_task(&Elsewhere {}).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("goes to queue \"other\""), "{err}");

    let mut worker = Worker::new(&db.config, ["math"], quick()).await.unwrap();
    let err = worker.run_tasks_until(async {}).await.unwrap_err();
    assert!(err.to_string().contains("needs at least one task"), "{err}");
    worker.task::<Elsewhere, _>(|_: Elsewhere, _: Message| async { Ok::<_, JobError>(()) });
    let err = worker.run_tasks_until(async {}).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("does not serve"), "{err}");

    let mut worker = Worker::new(&db.config, ["math"], quick()).await.unwrap();
    worker.task::<Add, _>(|_: Add, _: Message| async { Ok::<_, JobError>(()) });
    worker.task::<Add, _>(|_: Add, _: Message| async { Ok::<_, JobError>(()) });
    let err = worker.run_until(|_: Message| async { Ok::<_, JobError>(()) }, async {}).await.unwrap_err();
    assert!(err.to_string().contains("registered twice"), "{err}");
    db.drop().await;
}
