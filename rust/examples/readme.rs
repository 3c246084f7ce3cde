//! The README's Rust example, compiled by `cargo clippy --all-targets` (run by
//! `scripts/test`); `tests/test_cli_docs.py` checks that the README shows
//! exactly this code (the lines between `use` and `Ok(())`, unindented).

use pgqrs::{Config, Consumer, JobError, Message, Producer, Worker, WorkerOptions};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_dsn("postgresql://user:pass@localhost/mydb")?;
    let producer = Producer::new(&config, "tasks").await?;
    producer.enqueue(&json!({"task": "send_email"})).await?;

    let consumer = Consumer::new(&config, "tasks").await?;
    if let Some(msg) = consumer.dequeue().await? {
        consumer.archive(msg.id, "completed").await?; // fenced by the lease
    }

    let worker = Worker::new(&config, ["tasks"], WorkerOptions::default()).await?;
    worker
        .run(|msg: Message| async move {
            println!("{}", msg.payload);
            Ok::<_, JobError>(())
        })
        .await?; // until SIGINT/SIGTERM
    Ok(())
}
