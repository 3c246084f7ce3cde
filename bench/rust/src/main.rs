//! `pgqrs-bench DSN CONSUMERS BATCH MODE TARGET`: drain TARGET jobs of queue
//! `bench` (schema `pgqrs`) with CONSUMERS tokio tasks, each with its own
//! one-connection pool (connected before the clock starts), dequeuing BATCH at
//! a time and completing them with MODE (`archive` or `delete`). Prints
//! `{"jobs": N, "seconds": S}`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pgqrs::{Config, Consumer};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err("usage: pgqrs-bench DSN CONSUMERS BATCH MODE TARGET".into());
    }
    let consumers: usize = args[2].parse()?;
    let batch: usize = args[3].parse()?;
    let archive = match args[4].as_str() {
        "archive" => true,
        "delete" => false,
        other => return Err(format!("MODE must be archive or delete, got {other}").into()),
    };
    let target: usize = args[5].parse()?;
    let config = Config::from_dsn(&args[1])?.with_schema("pgqrs").with_pool_max_size(1);

    let mut clients = Vec::new();
    for _ in 0..consumers {
        let pool = pgqrs::make_pool(&config)?;
        drop(pool.get().await?);
        clients.push(Consumer::with_pool(&config, "bench", pool).await?);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while done.load(Ordering::Relaxed) < target {
                let got = if batch == 1 {
                    let Some(m) = c.dequeue().await? else { break };
                    if archive {
                        c.archive(&m, "completed").await?;
                    } else {
                        c.delete(&m).await?;
                    }
                    1
                } else {
                    let ms = c.dequeue_batch(batch).await?;
                    if ms.is_empty() {
                        break;
                    }
                    let k = ms.len();
                    if archive {
                        c.archive_batch(&ms, "completed").await?;
                    } else {
                        c.delete_batch(&ms).await?;
                    }
                    k
                };
                n += got;
                done.fetch_add(got, Ordering::Relaxed);
            }
            Ok::<usize, pgqrs::Error>(n)
        }));
    }
    let mut jobs = 0;
    for t in tasks {
        jobs += t.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("{{\"jobs\": {jobs}, \"seconds\": {seconds}}}");
    Ok(())
}
