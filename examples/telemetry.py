"""One trace from enqueue to completion, printed as a tree (docs/telemetry.md).

Needs ``pgqrs[otel]`` and the OpenTelemetry SDK (``pip install opentelemetry-sdk``).
Connects with PGQRS_DSN / PGQRS_SCHEMA (else the embedded server).
"""

import asyncio

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import pgqrs
import pgqrs.aio
import pgqrs.otel

# 1. The SDK: spans kept in memory (use an OTLP exporter in production).
spans = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(tracer_provider)
metrics = InMemoryMetricReader()
pgqrs.otel.instrument(meter_provider=MeterProvider(metric_readers=[metrics]))
tracer = trace.get_tracer("example")


async def main() -> None:
    config = pgqrs.Config.from_env()
    async with pgqrs.aio.Admin(config) as admin:
        await admin.install()
        await admin.create_queue("emails", exist_ok=True)

    # 2. A web request enqueues a job: the message's headers carry its context.
    with tracer.start_as_current_span("POST /signup"):
        async with pgqrs.aio.Producer(config, "emails") as producer:
            msg = await producer.enqueue({"to": "user@example.com"})
    print("headers:", msg.headers)

    # 3. A worker runs it: its process span continues the trace.
    worker = pgqrs.aio.Worker(config, handle_signals=False)

    @worker.handler("emails")
    async def send_email(m: pgqrs.Message) -> str:
        with tracer.start_as_current_span("smtp send"):
            await asyncio.sleep(0.01)
        worker.stop()
        return "sent"

    await worker.run()

    # 4. The trace, as a tree.
    finished = spans.get_finished_spans()
    children: dict[int | None, list[object]] = {}
    for s in finished:
        children.setdefault(s.parent.span_id if s.parent else None, []).append(s)

    def show(span, depth: int = 0) -> None:  # type: ignore[no-untyped-def]
        attrs = {k: v for k, v in (span.attributes or {}).items() if k.startswith("messaging.")}
        print(f"{'  ' * depth}{span.name} [{span.kind.name}] trace={span.context.trace_id:032x}")
        if attrs:
            print(f"{'  ' * depth}  {attrs}")
        for child in children.get(span.context.span_id, []):
            show(child, depth + 1)

    for root in children[None]:
        show(root)


asyncio.run(main())
