use pgqrs::{Admin, Config, Producer, Consumer};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Connect to PostgreSQL
    let config = Config::from_dsn(&std::env::var("PGQRS_DSN")?)?;

    // Set up pgqrs (run once)
    let admin = Admin::new(&config).await?;
    admin.install().await?;
    admin.create_queue("tasks").await?;

    // Producer: enqueue a job
    let producer = Producer::new(&config, "tasks").await?;
    let message = producer.enqueue(&json!({"task": "send_email", "to": "user@example.com"})).await?;
    println!("Enqueued message: {}", message.id);

    // Consumer: process jobs
    let consumer = Consumer::new(&config, "tasks").await?;
    if let Some(msg) = consumer.dequeue().await? {
        println!("Processing: {}", msg.payload);

        // Mark as complete
        consumer.archive(msg.id, "completed").await?;
    }

    Ok(())
}
