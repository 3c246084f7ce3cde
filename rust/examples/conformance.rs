//! One pgqrs action per invocation, for the cross-language conformance tests
//! (tests/test_conformance.py interleaves it with the Python client on one
//! database). Configured from the environment (`PGQRS_DSN`, `PGQRS_SCHEMA`,
//! ...: `Config::from_env`). Prints one line of JSON; a pgqrs error prints
//! `{"error": "<Python exception name>", "message": ..., "ids": [...]}` and
//! exits with status 2.
//!
//! ```text
//! conformance install | uninstall | verify
//! conformance create-queue NAME [--vt SECS] [--max-attempts N]
//! conformance enqueue QUEUE JSON [--dedup KEY] [--priority N] [--delay SECS] [--headers JSON] [--group G]
//! conformance enqueue-batch QUEUE JSON_ARRAY [--dedup-keys JSON_ARRAY] [--groups JSON_ARRAY]
//! conformance dequeue QUEUE [--vt SECS] [--batch N]
//! conformance dequeue-batch QUEUE N      -> {"messages": [...], "retry_after": SECS|null}
//! conformance archive QUEUE ID LEASE [--status S] [--result JSON]
//! conformance delete | release QUEUE ID LEASE
//! conformance extend QUEUE ID LEASE SECS
//! conformance stats QUEUE
//! conformance serve QUEUE [--options JSON]   (options may hold "schedules": [{...}])
//! conformance create-schedule JSON | list-schedules | delete-schedule NAME | pause-schedule NAME [--paused false]
//! conformance slots < CASES_JSON   (no database: each case's slots, docs/schedules.md)
//! ```
//!
//! `serve` runs a Worker (tests/_drivers.py's RustDriver) until its standard
//! input closes, then stops it gracefully and prints its counters. `--options`
//! sets `WorkerOptions` fields by their Python names (`concurrency`,
//! `poll_interval`, `grace_period`, `heartbeat_interval`, `prefetch`,
//! `poll_only`, `visibility_timeout`, `max_attempts`, `backoff`: `{"base",
//! "max", "jitter"}`). The handler does what each payload says, as the Python
//! driver's does: `{"gate": PATH}` waits until the file PATH exists, `{"sleep":
//! S}` waits S seconds, then `{"fail": N}` fails
//! (retry with the backoff) while the attempt is at most N, `{"abort": TEXT}`
//! gives up, and otherwise it returns `{"result": X}`'s X, or with
//! `{"report": true}` the attempt and last error it saw.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pgqrs::{
    Admin, Backoff, Config, Consumer, EnqueueOptions, JobError, Message, MessageRef, Missed, Producer,
    QueueOptions, Schedule, ScheduleInfo, Worker, WorkerOptions,
};
use pgqrs::internal::Timing;
use pgqrs::worker::Prefetch;
use serde_json::{json, Value};

type Fail = Box<dyn std::error::Error>;

struct Args {
    positional: Vec<String>,
    flags: HashMap<String, String>,
}

impl Args {
    fn parse() -> Args {
        let mut positional = Vec::new();
        let mut flags = HashMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.strip_prefix("--") {
                Some(name) => {
                    flags.insert(name.to_string(), it.next().unwrap_or_default());
                }
                None => positional.push(a),
            }
        }
        Args { positional, flags }
    }

    fn arg(&self, i: usize, what: &str) -> Result<&str, Fail> {
        self.positional.get(i).map(String::as_str).ok_or_else(|| format!("missing argument {what}").into())
    }

    fn flag(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }

    fn secs(&self, name: &str) -> Result<Option<Duration>, Fail> {
        Ok(self.flag(name).map(|s| s.parse::<f64>().map(Duration::from_secs_f64)).transpose()?)
    }

    fn message_ref(&self) -> Result<MessageRef, Fail> {
        Ok(MessageRef::with_lease(self.arg(2, "ID")?.parse()?, self.arg(3, "LEASE")?.parse()?))
    }
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "queue": m.queue,
        "payload": m.payload,
        "priority": m.priority,
        "attempts": m.attempts,
        "lease": m.lease.map(|l| l.to_string()),
        "dedup_key": m.dedup_key,
        "headers": m.headers,
        "last_error": m.last_error,
        "inserted": m.inserted,
        "group": m.group,
    })
}

/// A schedule from its JSON form (the fields named as in Python).
fn schedule_of(v: &Value) -> Result<Schedule, Fail> {
    let text = |k: &str| v.get(k).and_then(Value::as_str);
    let name = text("name").ok_or("schedule: name")?;
    let queue = text("queue").unwrap_or("");
    let payload = v.get("payload").cloned().unwrap_or(Value::Null);
    let mut s = match (text("cron"), v.get("interval").and_then(Value::as_f64)) {
        (Some(cron), _) => Schedule::cron(name, cron, queue, payload),
        (None, Some(secs)) => {
            Schedule::interval(name, Duration::from_secs_f64(secs.max(0.0)), queue, payload)
        }
        (None, None) => return Err("schedule: cron or interval".into()),
    };
    if let Some(tz) = text("time_zone") {
        s = s.time_zone(tz);
    }
    if let Some(m) = text("missed") {
        s = s.missed(Missed::parse(m)?);
    }
    if let Some(h) = v.get("headers") {
        s = s.headers(h.clone());
    }
    if let Some(p) = v.get("priority").and_then(Value::as_i64) {
        s = s.priority(p.try_into()?);
    }
    Ok(s)
}

fn schedule_json(s: &ScheduleInfo) -> Value {
    json!({
        "name": s.name, "queue": s.queue, "payload": s.payload, "headers": s.headers,
        "priority": s.priority, "cron": s.cron, "interval": s.interval, "time_zone": s.time_zone,
        "missed": s.missed, "paused": s.paused,
        "next_slot": s.next_slot.map(|t| t.to_rfc3339()), "last_slot": s.last_slot.map(|t| t.to_rfc3339()),
    })
}

/// `slots`: for each case {cron | interval, time_zone, after, count} of the
/// JSON array on standard input, its slots (RFC 3339, UTC) or its error.
fn slots() -> Result<Value, Fail> {
    let cases: Vec<Value> = serde_json::from_reader(std::io::stdin().lock())?;
    let mut out = Vec::new();
    for case in &cases {
        let after = chrono::DateTime::parse_from_rfc3339(case["after"].as_str().ok_or("after")?)?.to_utc();
        let count = case["count"].as_u64().ok_or("count")? as usize;
        let timing = Timing::new(
            case["cron"].as_str(),
            case["interval"].as_i64(),
            case["time_zone"].as_str().unwrap_or("UTC"),
        );
        out.push(match timing.and_then(|t| t.slots(after, count)) {
            Ok(slots) => {
                json!(slots.iter().map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).collect::<Vec<_>>())
            }
            Err(e) => json!({"error": e.kind().python_name(), "message": e.message()}),
        });
    }
    Ok(json!(out))
}

async fn run(args: &Args) -> Result<Value, Fail> {
    if args.positional.first().map(String::as_str) == Some("slots") {
        return slots();
    }
    let config = Config::from_env()?.with_pool_min_size(0).with_pool_max_size(1);
    let command = args.arg(0, "COMMAND")?;
    let queue = || args.arg(1, "QUEUE");
    Ok(match command {
        "install" => json!({"applied": Admin::new(&config).await?.install().await?}),
        "uninstall" => {
            Admin::new(&config).await?.uninstall().await?;
            json!({"ok": true})
        }
        "verify" => {
            let r = Admin::new(&config).await?.verify().await?;
            json!({
                "ok": r.ok(), "installed": r.installed, "current_version": r.current_version,
                "latest_version": r.latest_version, "missing": r.missing, "modified": r.modified,
                "unknown": r.unknown,
            })
        }
        "create-queue" => {
            let mut options = QueueOptions::default();
            if let Some(vt) = args.secs("vt")? {
                options.visibility_timeout = vt;
            }
            if let Some(n) = args.flag("max-attempts") {
                options.max_attempts = n.parse()?;
            }
            let q = Admin::new(&config).await?.create_queue_with(queue()?, &options).await?;
            json!({"name": q.name, "visibility_timeout": q.visibility_timeout, "max_attempts": q.max_attempts})
        }
        "cancel" => {
            // cancel ID: the outcome as Admin.cancel names it in Python.
            let id: i64 = args.arg(1, "ID")?.parse()?;
            let outcome = match Admin::new(&config).await?.cancel(id).await? {
                pgqrs::CancelOutcome::Cancelled => "cancelled",
                pgqrs::CancelOutcome::CancelRequested => "cancel_requested",
                other => return Err(format!("unexpected cancel outcome {other:?}").into()),
            };
            json!({"outcome": outcome})
        }
        "wait" => {
            // wait ID SECS: the archived row's status, result and progress.
            let id: i64 = args.arg(1, "ID")?.parse()?;
            let secs: f64 = args.arg(2, "SECS")?.parse()?;
            let a = Admin::new(&config).await?.wait(id, Some(Duration::from_secs_f64(secs))).await?;
            json!({"id": a.id, "status": a.status, "result": a.result, "progress": a.progress})
        }
        "stats" => {
            let s = Admin::new(&config).await?.queue_stats(queue()?).await?;
            json!({"ready": s.ready, "in_flight": s.in_flight, "delayed": s.delayed, "archived": s.archived})
        }
        "enqueue" => {
            let payload: Value = serde_json::from_str(args.arg(2, "JSON")?)?;
            let mut options = EnqueueOptions::new();
            options.dedup_key = args.flag("dedup").map(str::to_string);
            options.delay = args.secs("delay")?;
            if let Some(p) = args.flag("priority") {
                options.priority = p.parse()?;
            }
            if let Some(h) = args.flag("headers") {
                options.headers = Some(serde_json::from_str(h)?);
            }
            options.group = args.flag("group").map(str::to_string);
            let m = Producer::new(&config, queue()?).await?.enqueue_with(&payload, &options).await?;
            message_json(&m)
        }
        "enqueue-batch" => {
            let payloads: Vec<Value> = serde_json::from_str(args.arg(2, "JSON_ARRAY")?)?;
            let mut options = EnqueueOptions::new();
            if let Some(keys) = args.flag("dedup-keys") {
                options.dedup_keys = Some(serde_json::from_str(keys)?);
            }
            if let Some(groups) = args.flag("groups") {
                options.groups = Some(serde_json::from_str(groups)?);
            }
            let ms = Producer::new(&config, queue()?).await?.enqueue_batch_with(&payloads, &options).await?;
            Value::Array(ms.iter().map(message_json).collect())
        }
        "dequeue" => {
            let consumer = Consumer::new(&config, queue()?).await?;
            let vt = args.secs("vt")?;
            match args.flag("batch") {
                Some(n) => {
                    let ms = consumer.dequeue_batch_with(n.parse()?, vt).await?;
                    Value::Array(ms.iter().map(message_json).collect())
                }
                None => match consumer.dequeue_batch_with(1, vt).await?.first() {
                    Some(m) => message_json(m),
                    None => Value::Null,
                },
            }
        }
        "dequeue-batch" => {
            let consumer = Consumer::new(&config, queue()?).await?;
            let ms = consumer.dequeue_batch(args.arg(2, "N")?.parse()?).await?;
            json!({
                "messages": ms.iter().map(message_json).collect::<Vec<_>>(),
                "retry_after": consumer.retry_after().map(|d| d.as_secs_f64()),
            })
        }
        "archive" => {
            let consumer = Consumer::new(&config, queue()?).await?;
            let status = args.flag("status").unwrap_or("completed");
            match args.flag("result") {
                Some(r) => {
                    consumer.archive_with(args.message_ref()?, status, &serde_json::from_str(r)?).await?
                }
                None => consumer.archive(args.message_ref()?, status).await?,
            }
            json!({"ok": true})
        }
        "delete" => {
            Consumer::new(&config, queue()?).await?.delete(args.message_ref()?).await?;
            json!({"ok": true})
        }
        "release" => {
            Consumer::new(&config, queue()?).await?.release(args.message_ref()?).await?;
            json!({"ok": true})
        }
        "extend" => {
            let secs: f64 = args.arg(4, "SECS")?.parse()?;
            let consumer = Consumer::new(&config, queue()?).await?;
            let until = consumer.extend(args.message_ref()?, Duration::from_secs_f64(secs)).await?;
            json!({"visible_until": until.to_rfc3339()})
        }
        "create-schedule" => {
            let s = schedule_of(&serde_json::from_str(args.arg(1, "JSON")?)?)?;
            schedule_json(&Admin::new(&config).await?.create_schedule(&s).await?)
        }
        "list-schedules" => {
            json!(Admin::new(&config)
                .await?
                .list_schedules()
                .await?
                .iter()
                .map(schedule_json)
                .collect::<Vec<_>>())
        }
        "delete-schedule" => {
            Admin::new(&config).await?.delete_schedule(args.arg(1, "NAME")?).await?;
            json!({"ok": true})
        }
        "pause-schedule" => {
            let paused = args.flag("paused") != Some("false");
            Admin::new(&config).await?.pause_schedule(args.arg(1, "NAME")?, paused).await?;
            json!({"ok": true})
        }
        "serve" => {
            let given: Value = match args.flag("options") {
                Some(text) => serde_json::from_str(text)?,
                None => json!({}),
            };
            let mut plain = given.clone();
            let declared = plain.as_object_mut().and_then(|o| o.remove("schedules"));
            let options = worker_options(&plain)?;
            let mut worker = Worker::new(&config, queue()?, options).await?;
            for s in declared.as_ref().and_then(Value::as_array).into_iter().flatten() {
                worker.schedule(schedule_of(s)?)?;
            }
            let stats = worker.stats();
            let stop = worker.stop_handle();
            // The driver closes our standard input to ask for a graceful stop.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                stop.stop();
            });
            worker.run(scripted).await?;
            json!({
                "completed": stats.completed.load(Ordering::SeqCst),
                "retried": stats.retried.load(Ordering::SeqCst),
                "dead": stats.dead.load(Ordering::SeqCst),
                "scheduled": stats.scheduled.load(Ordering::SeqCst),
            })
        }
        other => return Err(format!("unknown command {other:?}").into()),
    })
}

/// `serve`'s options: WorkerOptions fields named as in Python, seconds as numbers.
fn worker_options(given: &Value) -> Result<WorkerOptions, Fail> {
    let mut o = WorkerOptions::default();
    let secs = |v: &Value| -> Result<Duration, Fail> {
        Ok(Duration::from_secs_f64(v.as_f64().ok_or_else(|| format!("not a number of seconds: {v}"))?))
    };
    let fields = given.as_object().ok_or("--options must be a JSON object")?;
    for (name, v) in fields {
        match name.as_str() {
            "concurrency" => o.concurrency = v.as_u64().ok_or("concurrency: an integer")? as usize,
            "poll_interval" => o.poll_interval = secs(v)?,
            "grace_period" => o.grace_period = secs(v)?,
            "heartbeat_interval" => o.heartbeat_interval = secs(v)?,
            "poll_only" => o.poll_only = v.as_bool().ok_or("poll_only: a boolean")?,
            "run_schedules" => o.run_schedules = v.as_bool(),
            "visibility_timeout" => o.visibility_timeout = Some(secs(v)?),
            "max_attempts" => {
                o.max_attempts = Some(v.as_i64().ok_or("max_attempts: an integer")?.try_into()?)
            }
            "prefetch" => {
                o.prefetch = match v.as_u64() {
                    Some(n) => Prefetch::Fixed(n.try_into()?),
                    None => Prefetch::Auto,
                }
            }
            "backoff" => {
                let b = v.as_object().ok_or("backoff: an object")?;
                o.backoff = Backoff {
                    base: b.get("base").map(secs).transpose()?.unwrap_or(o.backoff.base),
                    max: b.get("max").map(secs).transpose()?.unwrap_or(o.backoff.max),
                    jitter: b.get("jitter").and_then(Value::as_f64).unwrap_or(o.backoff.jitter),
                };
            }
            other => return Err(format!("unknown worker option {other:?}").into()),
        }
    }
    Ok(o)
}

/// `serve`'s handler: does what the payload says (see the module docs).
async fn scripted(msg: Message) -> Result<Value, JobError> {
    let p = &msg.payload;
    if let Some(path) = p.get("gate").and_then(Value::as_str) {
        while !std::path::Path::new(path).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if let Some(s) = p.get("sleep").and_then(Value::as_f64) {
        tokio::time::sleep(Duration::from_secs_f64(s)).await;
    }
    if let Some(n) = p.get("fail").and_then(Value::as_i64) {
        if i64::from(msg.attempts) <= n {
            return Err(JobError::retry(format!("attempt {} failed", msg.attempts)));
        }
    }
    if let Some(reason) = p.get("abort").and_then(Value::as_str) {
        return Err(JobError::give_up(reason));
    }
    if p.get("report") == Some(&Value::Bool(true)) {
        return Ok(json!({"attempts": msg.attempts, "last_error": msg.last_error}));
    }
    Ok(p.get("result").cloned().unwrap_or(Value::Null))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    match run(&args).await {
        Ok(out) => println!("{out}"),
        Err(e) => match e.downcast_ref::<pgqrs::Error>() {
            Some(pe) => {
                let out = json!({"error": pe.kind().python_name(), "message": pe.message(), "ids": pe.ids()});
                println!("{out}");
                std::process::exit(2);
            }
            None => {
                eprintln!("conformance: {e}");
                std::process::exit(64);
            }
        },
    }
}
