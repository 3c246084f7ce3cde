//! One trace across a producer and a worker, possibly in different languages
//! (feature `otel`). Configured from PGQRS_DSN / PGQRS_SCHEMA.
//!
//! ```sh
//! cargo run --features otel --example otel_trace -- enqueue tasks
//! cargo run --features otel --example otel_trace -- work tasks
//! ```
//!
//! `enqueue` starts a span, enqueues one message inside it and prints the
//! trace id and the message's `traceparent`; `work` runs a worker until one
//! message is processed and prints the trace id its handler ran in.
//! tests/test_telemetry_rust.py checks them against the Python side.

use std::sync::Arc;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use pgqrs::{Config, JobError, Message, Producer, Worker, WorkerOptions};
use serde_json::json;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, queue] = args.as_slice() else {
        return Err("usage: otel_trace enqueue|work QUEUE".into());
    };
    // An SDK provider without exporter: spans get real ids (sampled), which is
    // all that crosses to the other side.
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otel_trace")));
    tracing::subscriber::set_global_default(subscriber)?;
    let config = Config::from_env()?;
    match mode.as_str() {
        "enqueue" => {
            let producer = Producer::new(&config, queue).await?;
            let request = tracing::info_span!("rust request");
            let trace_id = request.context().span().span_context().trace_id();
            let msg = producer.enqueue(&json!({"from": "rust"})).instrument(request).await?;
            println!("trace_id={trace_id}");
            println!("message={}", msg.id);
            println!("traceparent={}", msg.headers["traceparent"].as_str().unwrap_or(""));
        }
        "work" => {
            let options = WorkerOptions { concurrency: 1, ..WorkerOptions::default() };
            let worker = Worker::new(&config, queue.as_str(), options).await?;
            let stop = Arc::new(worker.stop_handle());
            let handler = move |msg: Message| {
                let stop = stop.clone();
                async move {
                    let sc = tracing::Span::current().context().span().span_context().clone();
                    println!("process trace_id={} message={}", sc.trace_id(), msg.id);
                    stop.stop();
                    Ok::<_, JobError>(())
                }
            };
            worker.run(handler).await?;
        }
        other => return Err(format!("unknown mode {other:?}: enqueue or work").into()),
    }
    Ok(())
}
