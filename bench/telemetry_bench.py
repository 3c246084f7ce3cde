"""The cost of tracing: enqueue and worker drain with pgqrs.otel off and on.

    python -m bench.telemetry_bench [--dsn DSN] [--reps 3]

* enqueue-1: 2,000 single enqueues (one statement each, as W1);
* enqueue-100: 50 batches of 100 (enqueue_batch, as W2's batch case);
* drain: an asyncio worker (concurrency 16, no-op async handler) draining 5,000.

Modes, alternated per repetition (median kept): ``off`` (not instrumented: the
hooks are None, as when the extra is not installed); ``api`` (instrumented,
no SDK configured: the API's no-op tracer and meter, pgqrs's own cost); ``on`` (instrumented
with the OpenTelemetry SDK: a TracerProvider whose BatchSpanProcessor feeds
an exporter that drops the spans, and a MeterProvider with an in-memory
reader). Prints rates and the on/off ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence

import pgqrs
import pgqrs.aio
from bench.server import server

SCHEMA = "pgqrs_telemetry_bench"
QUEUE = "bench"


def instrument(sdk: bool = True) -> None:
    import pgqrs.otel

    if not sdk:  # the global providers, never set: the API's no-op ones
        pgqrs.otel.instrument()
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    pgqrs.otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)


def uninstrument() -> None:
    import pgqrs.otel

    pgqrs.otel.uninstrument()


def enqueue_single(config: pgqrs.Config, n: int = 2000) -> float:
    with pgqrs.Producer(config, QUEUE) as producer:
        producer.enqueue(0)  # warm the pool
        t = time.perf_counter()
        for i in range(n):
            producer.enqueue({"n": i})
        return n / (time.perf_counter() - t)


def enqueue_batch(config: pgqrs.Config, batches: int = 50, size: int = 100) -> float:
    payloads = [{"n": i} for i in range(size)]
    with pgqrs.Producer(config, QUEUE) as producer:
        producer.enqueue(0)
        t = time.perf_counter()
        for _ in range(batches):
            producer.enqueue_batch(payloads)
        return batches * size / (time.perf_counter() - t)


def drain(config: pgqrs.Config, n: int = 5000) -> float:
    with pgqrs.Producer(config, QUEUE) as producer:
        for start in range(0, n, 500):
            producer.enqueue_batch([{"n": i} for i in range(start, start + 500)])

    async def run() -> float:
        worker = pgqrs.aio.Worker(config, concurrency=16, poll_interval=0.05, handle_signals=False)

        @worker.handler(QUEUE)
        async def handle(m: pgqrs.Message) -> None:
            return None

        t = time.perf_counter()
        task = asyncio.create_task(worker.run())
        while worker.counters.completed < n:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t
        worker.stop()
        await task
        return n / elapsed

    return asyncio.run(run())


def clear(admin: pgqrs.Admin) -> None:
    admin.purge_queue(QUEUE)
    admin.purge_archive(older_than=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--off-only", action="store_true", help="only the off mode (e.g. to compare commits)"
    )
    args = parser.parse_args()
    modes = ("off",) if args.off_only else ("off", "api", "on")
    cases: dict[str, Callable[[pgqrs.Config], float]] = {
        "enqueue-1 (msgs/s)": enqueue_single,
        "enqueue-100 (msgs/s)": enqueue_batch,
        "drain c=16 (jobs/s)": drain,
    }
    with server(args.dsn) as dsn:
        config = pgqrs.Config(dsn=dsn, schema=SCHEMA)
        rates: dict[tuple[str, str], list[float]] = {}
        with pgqrs.Admin(config) as admin:
            admin.uninstall()
            admin.install()
            admin.create_queue(QUEUE)
            for _ in range(args.reps):
                for mode in modes:
                    if mode != "off":
                        instrument(sdk=mode == "on")
                    for name, case in cases.items():
                        clear(admin)
                        rates.setdefault((name, mode), []).append(case(config))
                    if mode != "off":
                        uninstrument()
            admin.uninstall()
        if args.off_only:
            for name in cases:
                print(f"{name:<24}{statistics.median(rates[(name, 'off')]):>9.0f}")
            return
        print(f"{'case':<24}{'off':>9}{'api':>9}{'on':>9}{'api/off':>9}{'on/off':>8}")
        for name in cases:
            off, api, on = (statistics.median(rates[(name, m)]) for m in ("off", "api", "on"))
            print(f"{name:<24}{off:>9.0f}{api:>9.0f}{on:>9.0f}{api / off:>9.2f}{on / off:>8.2f}")


if __name__ == "__main__":
    main()
