//! The worker's OpenTelemetry metrics (feature `otel`) with the SDK's
//! in-memory exporter: the instruments and attributes of Python's `pgqrs.otel`.
#![cfg(feature = "otel")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, TestDb};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
use pgqrs::{Backoff, JobError, Message, Producer, QueueOptions, Worker, WorkerOptions};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// One point: its attributes by key, and its value (a sum, a gauge, or a
/// histogram's count).
type Point = (BTreeMap<String, String>, f64);

struct Metrics {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Metrics {
    fn new() -> Metrics {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder().with_periodic_exporter(exporter.clone()).build();
        Metrics { provider, exporter }
    }

    /// The points of instrument `name` now (cumulative).
    fn points(&self, name: &str) -> Vec<Point> {
        self.exporter.reset();
        self.provider.force_flush().unwrap();
        let mut out = Vec::new();
        for rm in self.exporter.get_finished_metrics().unwrap() {
            for sm in rm.scope_metrics() {
                assert_eq!(sm.scope().name(), "pgqrs");
                for m in sm.metrics().filter(|m| m.name() == name) {
                    collect(m.data(), &mut out);
                }
            }
        }
        out
    }

    fn total(&self, name: &str) -> f64 {
        self.points(name).iter().map(|(_, v)| v).sum()
    }
}

fn attrs<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> BTreeMap<String, String> {
    kvs.map(|kv| (kv.key.to_string(), kv.value.to_string())).collect()
}

fn collect(data: &AggregatedMetrics, out: &mut Vec<Point>) {
    match data {
        AggregatedMetrics::U64(MetricData::Sum(s)) => {
            out.extend(s.data_points().map(|p| (attrs(p.attributes()), p.value() as f64)))
        }
        AggregatedMetrics::U64(MetricData::Gauge(g)) => {
            out.extend(g.data_points().map(|p| (attrs(p.attributes()), p.value() as f64)))
        }
        AggregatedMetrics::F64(MetricData::Histogram(h)) => {
            out.extend(h.data_points().map(|p| (attrs(p.attributes()), p.count() as f64)))
        }
        other => panic!("unexpected instrument data {other:?}"),
    }
}

fn queue_attrs(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [
        ("messaging.system".to_string(), "pgqrs".to_string()),
        ("messaging.destination.name".to_string(), "jobs".to_string()),
    ]
    .into();
    m.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_metrics_have_pythons_names_and_attributes() {
    let (db, admin) = TestDb::installed().await;
    let options = QueueOptions {
        visibility_timeout: Duration::from_secs(1),
        max_attempts: 3,
        ..QueueOptions::default()
    };
    admin.create_queue_with("jobs", &options).await.unwrap();
    let producer = Producer::new(&db.config, "jobs").await.unwrap();
    for kind in ["ok", "flaky", "dead"] {
        producer.enqueue(&json!({"kind": kind})).await.unwrap();
    }
    let slow = producer.enqueue(&json!({"kind": "slow"})).await.unwrap();

    let metrics = Metrics::new();
    let opts = WorkerOptions {
        concurrency: 4,
        poll_interval: Duration::from_millis(50),
        backoff: Backoff { base: Duration::from_millis(20), max: Duration::from_millis(50), jitter: 0.0 },
        ..WorkerOptions::default()
    };
    let worker = Worker::new(&db.config, "jobs", opts).await.unwrap().with_meter_provider(&metrics.provider);
    let stats = worker.counters();
    let stop = worker.stop_handle();
    let release = Arc::new(tokio::sync::Notify::new());
    let released = release.clone();
    let run = tokio::spawn(async move {
        worker
            .run_until(
                move |msg: Message| {
                    let released = released.clone();
                    async move {
                        match msg.payload["kind"].as_str().unwrap() {
                            "flaky" if msg.attempts == 1 => Err(JobError::from("flaky failed")),
                            "dead" => Err(JobError::give_up("no")),
                            "slow" => {
                                released.notified().await;
                                Ok(())
                            }
                            _ => Ok(()),
                        }
                    }
                },
                std::future::pending(),
            )
            .await
    });

    // The slow job's lease (1 s) is extended while it runs.
    eventually(WAIT, "a lease extension", || async {
        (metrics.total("pgqrs.worker.lease_extensions") >= 1.0).then_some(())
    })
    .await;
    for (a, _) in metrics.points("pgqrs.worker.lease_extensions") {
        assert_eq!(a, queue_attrs(&[]));
    }
    let gauges = (metrics.points("pgqrs.worker.running"), metrics.points("pgqrs.worker.in_flight"));
    for points in [&gauges.0, &gauges.1] {
        assert_eq!(points.len(), 1, "one point per worker: {points:?}");
        let (a, v) = &points[0];
        assert_eq!(a.keys().collect::<Vec<_>>(), ["messaging.pgqrs.worker.id"]);
        assert!(*v >= 1.0, "{points:?}");
    }
    // Its lease passes to another consumer: the next extension finds it lost.
    let raw = db.raw().await;
    let sql = format!("UPDATE \"{}\".messages SET lease = gen_random_uuid() WHERE id = $1", db.schema);
    raw.execute(&sql, &[&slow.id]).await.unwrap();
    eventually(WAIT, "the lost lease", || async {
        (metrics.total("pgqrs.worker.leases_lost") == 1.0).then_some(())
    })
    .await;
    release.notify_one();
    eventually(WAIT, "every outcome", || async {
        let s = &stats;
        use std::sync::atomic::Ordering::SeqCst;
        (s.completed.load(SeqCst) == 2 && s.dead.load(SeqCst) == 1 && s.lease_lost.load(SeqCst) == 1)
            .then_some(())
    })
    .await;
    stop.stop();
    run.await.unwrap().unwrap();

    let (a, lost) = metrics.points("pgqrs.worker.leases_lost").remove(0);
    assert_eq!((a, lost), (queue_attrs(&[]), 1.0));
    let outcomes: BTreeMap<String, f64> = metrics
        .points("pgqrs.worker.messages")
        .into_iter()
        .map(|(a, v)| {
            let outcome = a["messaging.pgqrs.outcome"].clone();
            assert_eq!(a, queue_attrs(&[("messaging.pgqrs.outcome", &outcome)]));
            (outcome, v)
        })
        .collect();
    let expected: BTreeMap<String, f64> =
        [("completed", 2.0), ("retried", 1.0), ("dead", 1.0), ("lease_lost", 1.0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    assert_eq!(outcomes, expected);
    // The same attributes on the duration histogram: one count per settled delivery.
    let durations = metrics.points("messaging.process.duration");
    assert_eq!(durations.iter().map(|(_, n)| n).sum::<f64>(), 5.0, "{durations:?}");
    assert!(durations.iter().all(|(a, _)| a.contains_key("messaging.pgqrs.outcome")));
    let mut failures: Vec<(String, f64)> = metrics
        .points("pgqrs.worker.failures")
        .into_iter()
        .map(|(a, v)| {
            let kind = a["error.type"].clone();
            assert_eq!(a, queue_attrs(&[("error.type", &kind)]));
            (kind, v)
        })
        .collect();
    failures.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(failures, [("&str".to_string(), 1.0), ("pgqrs.Abort".to_string(), 1.0)]);
    // First deliveries only: the flaky job's second attempt has no queue wait.
    let waits = metrics.points("pgqrs.worker.queue_wait");
    assert_eq!(waits, [(queue_attrs(&[]), 4.0)]);
    db.drop().await;
}
