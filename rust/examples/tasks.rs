//! Tasks across languages (run by tests/test_tasks_rust.py): the task `add`
//! (queue `math`) declared in Rust, on the wire format Python uses.
//!
//! `cargo run --example tasks -- enqueue A B` enqueues `add(a=A, b=B)` and
//! prints `message=<id>`; `-- work N` runs a worker with the task until `N`
//! messages of `math` are archived. The database comes from `PGQRS_DSN` (and
//! `PGQRS_SCHEMA`).

use std::time::Duration;

use pgqrs::{Admin, Config, JobError, Message, Producer, Task, Worker, WorkerOptions};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

impl Task for Add {
    const NAME: &'static str = "add";
    const QUEUE: &'static str = "math";
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = Config::from_env()?;
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["enqueue", a, b] => {
            let producer = Producer::new(&config, Add::QUEUE).await?;
            let msg = producer.enqueue_task(&Add { a: a.parse()?, b: b.parse()? }).await?;
            println!("message={}", msg.id);
        }
        ["work", n] => {
            let n: usize = n.parse()?;
            let admin = Admin::new(&config).await?;
            let options =
                WorkerOptions { poll_interval: Duration::from_millis(50), ..WorkerOptions::default() };
            let mut worker = Worker::new(&config, [Add::QUEUE], options).await?;
            worker
                .task::<Add, _>(|args: Add, _msg: Message| async move { Ok::<_, JobError>(args.a + args.b) });
            let done = async move {
                while admin.list_archive(Some(Add::QUEUE), None, 1000).await.map_or(0, |r| r.len()) < n {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            worker.run_tasks_until(done).await?;
            println!("done");
        }
        _ => return Err("usage: tasks enqueue A B | tasks work N".into()),
    }
    Ok(())
}
