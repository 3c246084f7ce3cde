//! Worker metrics through the OpenTelemetry metrics API (feature `otel`),
//! with the instrument names and attributes of Python's `pgqrs.otel`
//! (`src/pgqrs/_telemetry/otel.py`; the table is in docs/telemetry.md).
//!
//! Without the feature [`WorkerMetrics`] is an empty type whose methods do
//! nothing, so the worker calls it without `cfg` at each call site.

#[cfg(feature = "otel")]
pub(crate) use imp::WorkerMetrics;
#[cfg(not(feature = "otel"))]
pub(crate) use noop::WorkerMetrics;

/// `messaging.pgqrs.outcome` values: how a delivery was settled.
pub(crate) mod outcome {
    pub(crate) const COMPLETED: &str = "completed";
    pub(crate) const RETRIED: &str = "retried";
    pub(crate) const DEAD: &str = "dead";
    pub(crate) const LEASE_LOST: &str = "lease_lost";
    pub(crate) const CANCELLED: &str = "cancelled";
}

#[cfg(not(feature = "otel"))]
mod noop {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::message::Message;
    use crate::worker::WorkerStats;

    /// Records nothing (feature `otel` off). Not a unit struct, so that
    /// `WorkerMetrics::default()` reads the same with the feature on or off.
    #[derive(Clone, Default)]
    pub(crate) struct WorkerMetrics(());

    impl WorkerMetrics {
        pub(crate) fn observe(&self, _stats: &Arc<WorkerStats>, _worker_id: i64) {}
        pub(crate) fn started(&self, _msg: &Message) {}
        pub(crate) fn failed(&self, _queue: &str, _error_type: &str) {}
        pub(crate) fn settled(&self, _queue: &str, _outcome: &'static str, _duration: Duration) {}
        pub(crate) fn leases_extended(&self, _queue: &str, _n: u64) {}
        pub(crate) fn lease_lost(&self, _queue: &str) {}
    }
}

#[cfg(feature = "otel")]
mod imp {
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider};
    use opentelemetry::{InstrumentationScope, KeyValue};

    use crate::message::Message;
    use crate::worker::WorkerStats;

    const SYSTEM_ATTR: &str = "messaging.system";
    const SYSTEM: &str = "pgqrs";
    const DESTINATION: &str = "messaging.destination.name";
    const OUTCOME: &str = "messaging.pgqrs.outcome";
    const ERROR_TYPE: &str = "error.type";
    const WORKER_ID: &str = "messaging.pgqrs.worker.id";

    /// The instruments of one worker, on the meter `pgqrs`.
    #[derive(Clone)]
    pub(crate) struct WorkerMetrics {
        meter: Meter,
        messages: Counter<u64>,
        failures: Counter<u64>,
        duration: Histogram<f64>,
        queue_wait: Histogram<f64>,
        lease_extensions: Counter<u64>,
        leases_lost: Counter<u64>,
    }

    impl Default for WorkerMetrics {
        /// On the global meter provider (a no-op until the application sets one).
        fn default() -> Self {
            WorkerMetrics::new(opentelemetry::global::meter_with_scope(scope()))
        }
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("pgqrs").with_version(env!("CARGO_PKG_VERSION")).build()
    }

    fn queue_attrs(queue: &str) -> [KeyValue; 2] {
        [KeyValue::new(SYSTEM_ATTR, SYSTEM), KeyValue::new(DESTINATION, queue.to_string())]
    }

    impl WorkerMetrics {
        /// On `provider`'s meter `pgqrs`.
        pub(crate) fn with_provider<P: MeterProvider + ?Sized>(provider: &P) -> WorkerMetrics {
            WorkerMetrics::new(provider.meter_with_scope(scope()))
        }

        fn new(meter: Meter) -> WorkerMetrics {
            WorkerMetrics {
                messages: meter
                    .u64_counter("pgqrs.worker.messages")
                    .with_unit("{message}")
                    .with_description(
                        "Deliveries settled by a worker, by queue and outcome (completed, retried, \
                         dead, lease_lost, interrupted, cancelled).",
                    )
                    .build(),
                failures: meter
                    .u64_counter("pgqrs.worker.failures")
                    .with_unit("{message}")
                    .with_description("Handler calls that failed (a retried or dead outcome follows).")
                    .build(),
                duration: meter
                    .f64_histogram("messaging.process.duration")
                    .with_unit("s")
                    .with_description("From handler start until the delivery's outcome is written.")
                    .build(),
                queue_wait: meter
                    .f64_histogram("pgqrs.worker.queue_wait")
                    .with_unit("s")
                    .with_description("First deliveries: from enqueue to dequeue (database clock).")
                    .build(),
                lease_extensions: meter
                    .u64_counter("pgqrs.worker.lease_extensions")
                    .with_unit("{lease}")
                    .with_description("Leases extended because a handler ran long.")
                    .build(),
                leases_lost: meter
                    .u64_counter("pgqrs.worker.leases_lost")
                    .with_unit("{lease}")
                    .with_description(
                        "Leases found expired when the worker came to extend them (the message \
                         may be running elsewhere).",
                    )
                    .build(),
                meter,
            }
        }

        /// The in-flight and running gauges of a started worker, read from
        /// its counters (nothing once the worker is dropped).
        pub(crate) fn observe(&self, stats: &Arc<WorkerStats>, worker_id: i64) {
            let attrs = [KeyValue::new(WORKER_ID, worker_id.to_string())];
            for (name, description, read) in [
                (
                    "pgqrs.worker.in_flight",
                    "Messages a worker holds leased right now.",
                    (|s: &WorkerStats| s.in_flight.load(std::sync::atomic::Ordering::Relaxed))
                        as fn(&WorkerStats) -> u64,
                ),
                ("pgqrs.worker.running", "Handlers running right now.", |s: &WorkerStats| {
                    s.running.load(std::sync::atomic::Ordering::Relaxed)
                }),
            ] {
                let stats: Weak<WorkerStats> = Arc::downgrade(stats);
                let attrs = attrs.clone();
                self.meter
                    .u64_observable_gauge(name)
                    .with_unit("{message}")
                    .with_description(description)
                    .with_callback(move |observer| {
                        if let Some(stats) = stats.upgrade() {
                            observer.observe(read(&stats), &attrs);
                        }
                    })
                    .build();
            }
        }

        /// A handler starts: the queue wait of a first delivery.
        pub(crate) fn started(&self, msg: &Message) {
            if msg.attempts != 1 {
                return;
            }
            if let Some(dequeued) = msg.dequeued_at {
                let wait = (dequeued - msg.enqueued_at).to_std().unwrap_or_default();
                self.queue_wait.record(wait.as_secs_f64(), &queue_attrs(&msg.queue));
            }
        }

        /// A handler failed (not an explicit retry), with the error's type.
        pub(crate) fn failed(&self, queue: &str, error_type: &str) {
            let [system, destination] = queue_attrs(queue);
            self.failures.add(1, &[system, destination, KeyValue::new(ERROR_TYPE, error_type.to_string())]);
        }

        /// A delivery's outcome was written `duration` after its handler started.
        pub(crate) fn settled(&self, queue: &str, outcome: &'static str, duration: Duration) {
            let [system, destination] = queue_attrs(queue);
            let attrs = [system, destination, KeyValue::new(OUTCOME, outcome)];
            self.messages.add(1, &attrs);
            self.duration.record(duration.as_secs_f64(), &attrs);
        }

        /// `n` leases of `queue` were extended.
        pub(crate) fn leases_extended(&self, queue: &str, n: u64) {
            self.lease_extensions.add(n, &queue_attrs(queue));
        }

        /// A lease of `queue` was found lost when extending it.
        pub(crate) fn lease_lost(&self, queue: &str) {
            self.leases_lost.add(1, &queue_attrs(queue));
        }
    }
}
