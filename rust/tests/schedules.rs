//! Schedules (docs/schedules.md) from Rust: Admin calls, bad input, and two
//! workers firing an every-second schedule with each slot enqueued once.

mod common;

use std::time::Duration;

use common::{eventually, TestDb};
use pgqrs::{ErrorKind, JobError, Message, Missed, Schedule, Worker, WorkerOptions};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn admin_creates_lists_pauses_and_deletes() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue("tasks").await.unwrap();
    let s = Schedule::cron("nightly", "30 2 * * *", "tasks", json!({"r": 1}))
        .time_zone("Europe/Berlin")
        .missed(Missed::Latest)
        .headers(json!({"team": "ops"}))
        .priority(3);
    let info = admin.create_schedule(&s).await.unwrap();
    assert_eq!(
        (info.cron.as_deref(), info.interval, info.missed.as_str()),
        (Some("30 2 * * *"), None, "latest")
    );
    assert_eq!((info.time_zone.as_str(), info.priority, info.paused), ("Europe/Berlin", 3, false));
    let dup = admin.create_schedule(&s).await.unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::ScheduleExists);
    assert!(dup.to_string().contains("nightly"), "{dup}");
    admin
        .create_schedule(&Schedule::interval("tick", Duration::from_secs(5), "tasks", json!(1)))
        .await
        .unwrap();
    let names: Vec<String> = admin.list_schedules().await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["nightly", "tick"]);
    admin.pause_schedule("tick", true).await.unwrap();
    assert!(admin.list_schedules().await.unwrap()[1].paused);
    admin.resume_schedule("tick").await.unwrap();
    assert!(!admin.list_schedules().await.unwrap()[1].paused);
    admin.delete_schedule("tick").await.unwrap();
    let gone = admin.delete_schedule("tick").await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::ScheduleNotFound);
    assert_eq!(admin.pause_schedule("tick", true).await.unwrap_err().kind(), ErrorKind::ScheduleNotFound);
    db.drop().await;
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_writes_nothing() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue("tasks").await.unwrap();
    let cases: Vec<(Schedule, ErrorKind, &str)> = vec![
        (Schedule::cron("s", "61 * * * *", "tasks", json!(1)), ErrorKind::InvalidArgument, "61 * * * *"),
        (Schedule::cron("s", "* * * *", "tasks", json!(1)), ErrorKind::InvalidArgument, "* * * *"),
        (Schedule::cron("s", "0 0 30 2 *", "tasks", json!(1)), ErrorKind::InvalidArgument, "0 0 30 2 *"),
        (
            Schedule::cron("s", "* * * * *", "tasks", json!(1)).time_zone("Mars/Olympus"),
            ErrorKind::InvalidArgument,
            "Mars/Olympus",
        ),
        (Schedule::interval("s", Duration::ZERO, "tasks", json!(1)), ErrorKind::InvalidArgument, "interval"),
        (
            Schedule::interval("s", Duration::from_millis(1500), "tasks", json!(1)),
            ErrorKind::InvalidArgument,
            "1.5",
        ),
        (
            Schedule::interval("s", Duration::from_secs(1), "", json!(1)),
            ErrorKind::InvalidArgument,
            "queue is missing",
        ),
        (Schedule::interval("s", Duration::from_secs(1), "nope", json!(1)), ErrorKind::QueueNotFound, "nope"),
        (
            Schedule::interval("a b", Duration::from_secs(1), "tasks", json!(1)),
            ErrorKind::InvalidArgument,
            "a b",
        ),
        (
            Schedule::interval("s", Duration::from_secs(1), "tasks", json!(1)).headers(json!([1])),
            ErrorKind::Payload,
            "headers",
        ),
    ];
    for (s, kind, named) in cases {
        let e = admin.create_schedule(&s).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{s:?}: {e}");
        assert!(e.to_string().contains(named), "{e} should name {named}");
    }
    assert!(admin.list_schedules().await.unwrap().is_empty());
    db.drop().await;
}

async fn echo(_msg: Message) -> Result<Value, JobError> {
    Ok(Value::Null)
}

#[tokio::test]
async fn two_workers_fire_each_slot_once() {
    let (db, admin) = TestDb::installed().await;
    admin.create_queue("jobs").await.unwrap();
    let mut stops = Vec::new();
    let mut stats = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let options = WorkerOptions { poll_interval: Duration::from_millis(200), ..WorkerOptions::default() };
        let mut worker = Worker::new(&db.config, "jobs", options).await.unwrap();
        worker
            .schedule(Schedule::interval("beat", Duration::from_secs(1), "jobs", json!({"beat": true})))
            .unwrap();
        let dup = worker
            .schedule(Schedule::interval("beat", Duration::from_secs(2), "jobs", json!(1)))
            .unwrap_err();
        assert!(dup.to_string().contains("declared twice"), "{dup}");
        stops.push(worker.stop_handle());
        stats.push(worker.stats());
        tasks.push(tokio::spawn(async move { worker.run_until(echo, std::future::pending()).await }));
    }
    let raw = db.raw().await;
    let count = format!(
        "SELECT count(*), count(DISTINCT headers->>'pgqrs-slot') FROM (SELECT headers FROM \"{0}\".messages \
         UNION ALL SELECT headers FROM \"{0}\".archive) x WHERE headers->>'pgqrs-schedule' = 'beat'",
        db.schema
    );
    let (total, distinct) = eventually(WAIT, "three slots fired", || async {
        let row = raw.query_one(&count, &[]).await.unwrap();
        let (total, distinct): (i64, i64) = (row.get(0), row.get(1));
        (total >= 3).then_some((total, distinct))
    })
    .await;
    for s in &stops {
        s.stop();
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(total - distinct <= 0, "a slot fired twice: {total} messages for {distinct} slots");
    let row = raw.query_one(&count, &[]).await.unwrap();
    let (total, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(total, distinct, "each slot once");
    let fired: u64 = stats.iter().map(|s| s.scheduled.load(std::sync::atomic::Ordering::SeqCst)).sum();
    assert_eq!(fired as i64, total);
    assert_eq!(admin.list_schedules().await.unwrap().len(), 1);
    db.drop().await;
}
