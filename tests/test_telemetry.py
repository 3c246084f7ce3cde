"""OpenTelemetry traces and metrics (pgqrs.otel) with the SDK's in-memory exporters.

The traces checked: Python producer -> Python worker (one trace, the handler's
own spans inside the process span), a batch giving each message its own
context, a retried job showing each attempt, dead and interrupted outcomes.
Rust <-> Python is in tests/test_telemetry_rust.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import pgqrs
import pgqrs.aio
import pgqrs.otel


class Telemetry:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("test")

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            p
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == metric
            for p in m.data.data_points
        ]


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    t = Telemetry()
    pgqrs.otel.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    yield t
    pgqrs.otel.uninstrument()


async def until(cond: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def run_until(worker: pgqrs.aio.Worker, cond: Any, what: str) -> None:
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: cond() or task.done(), what=what)
        if task.done():
            task.result()
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)


def test_importing_pgqrs_imports_no_opentelemetry() -> None:
    """The extra is installed here, yet plain pgqrs (library, CLI, a producer's
    hot path) never imports it: the hooks stay None."""
    code = (
        "import sys, pgqrs, pgqrs.aio, pgqrs._cli\n"
        "from pgqrs._telemetry import hooks\n"
        "assert hooks.publish is None and hooks.worker is None\n"
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('opentelemetry', 'prometheus_client')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out


def test_otel_without_the_extra_says_what_to_install() -> None:
    """A process without opentelemetry gets a clear ImportError naming the extra."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import pgqrs\n"
        "try:\n"
        "    import pgqrs.otel\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'pgqrs[otel]'" in out, out


async def test_one_trace_from_enqueue_to_completion(
    otel: Telemetry, queue: str, config: pgqrs.Config
) -> None:
    with otel.tracer.start_as_current_span("web request") as request:
        async with pgqrs.aio.Producer(config, queue) as producer:
            msg = await producer.enqueue({"n": 1}, headers={"tenant": "a"})
    trace_id = request.get_span_context().trace_id
    assert msg.headers["tenant"] == "a"
    assert msg.headers["traceparent"].split("-")[1] == f"{trace_id:032x}"

    seen: list[Any] = []
    worker = pgqrs.aio.Worker(config, poll_interval=0.05)

    @worker.handler(queue)
    def handle(m: pgqrs.Message) -> str:  # sync: runs on a thread, context copied
        with otel.tracer.start_as_current_span("handler work") as work:
            seen.append(work.get_span_context())
        return "ok"

    await run_until(worker, lambda: otel.spans(f"process {queue}"), "the process span")

    (send,) = otel.spans(f"send {queue}")
    (process,) = otel.spans(f"process {queue}")
    (work,) = otel.spans("handler work")
    assert {s.context.trace_id for s in (send, process, work)} == {trace_id}
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    assert work.parent is not None and work.parent.span_id == process.context.span_id
    assert dict(send.attributes or {}) == {
        "messaging.system": "pgqrs",
        "messaging.destination.name": queue,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": str(msg.id),
    }
    attrs = dict(process.attributes or {})
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["messaging.message.id"] == str(msg.id)
    assert attrs["messaging.pgqrs.attempt"] == 1
    assert attrs["messaging.pgqrs.outcome"] == "completed"
    assert process.status.status_code == StatusCode.UNSET

    (sent,) = otel.points("messaging.client.sent.messages")
    assert sent.value == 1 and sent.attributes["messaging.destination.name"] == queue
    (done,) = otel.points("pgqrs.worker.messages")
    assert done.value == 1 and done.attributes["messaging.pgqrs.outcome"] == "completed"
    (wait,) = otel.points("pgqrs.worker.queue_wait")
    assert wait.count == 1 and wait.sum >= 0
    (duration,) = otel.points("messaging.process.duration")
    assert duration.count == 1
    assert [p.value for p in otel.points("pgqrs.worker.in_flight")] == [0]
    assert [p.value for p in otel.points("pgqrs.worker.running")] == [0]


async def test_batch_gives_each_message_its_own_context(
    otel: Telemetry, queue: str, config: pgqrs.Config
) -> None:
    async with pgqrs.aio.Producer(config, queue) as producer:
        msgs = await producer.enqueue_batch([{"n": i} for i in range(3)])
        # A traceparent the caller set is theirs: kept as is.
        own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        kept = await producer.enqueue({"n": 9}, headers={"traceparent": own})
    assert kept.headers == {"traceparent": own}
    creates = otel.spans(f"create {queue}")
    sends = otel.spans(f"send {queue}")
    batch_send = next(s for s in sends if (s.attributes or {}).get("messaging.batch.message_count"))
    assert batch_send.kind == SpanKind.CLIENT
    assert len(creates) == 3 and len({s.context.span_id for s in creates}) == 3
    assert {link.context.span_id for link in batch_send.links} == {
        s.context.span_id for s in creates
    }
    by_id = {(s.attributes or {})["messaging.message.id"]: s for s in creates}
    for m in msgs:
        assert m.headers["traceparent"].split("-")[2] == f"{by_id[str(m.id)].context.span_id:016x}"

    worker = pgqrs.aio.Worker(config, poll_interval=0.05)
    worker.handler(queue)(lambda m: None)
    await run_until(worker, lambda: len(otel.spans(f"process {queue}")) == 4, "4 deliveries")
    for p in otel.spans(f"process {queue}"):
        mid = (p.attributes or {})["messaging.message.id"]
        if mid == str(kept.id):
            assert p.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
            continue
        assert p.parent is not None and p.parent.span_id == by_id[mid].context.span_id


async def test_a_retried_job_shows_each_attempt(
    otel: Telemetry, queue: str, config: pgqrs.Config
) -> None:
    async with pgqrs.aio.Producer(config, queue) as producer:
        msg = await producer.enqueue({"flaky": True})
    worker = pgqrs.aio.Worker(config, poll_interval=0.05)

    @worker.handler(queue, max_attempts=5)
    async def handle(m: pgqrs.Message) -> None:
        if m.attempts == 1:
            raise ValueError("boom")
        if m.attempts == 2:
            raise pgqrs.Retry(delay=0, reason="later")

    await run_until(worker, lambda: len(otel.spans(f"process {queue}")) == 3, "3 attempts")
    (send,) = otel.spans(f"send {queue}")
    attempts = sorted(
        otel.spans(f"process {queue}"),
        key=lambda s: (s.attributes or {})["messaging.pgqrs.attempt"],
    )
    assert [(s.attributes or {})["messaging.pgqrs.attempt"] for s in attempts] == [1, 2, 3]
    assert [(s.attributes or {})["messaging.pgqrs.outcome"] for s in attempts] == [
        "retried",
        "retried",
        "completed",
    ]
    for s in attempts:
        assert s.context.trace_id == send.context.trace_id
        assert s.parent is not None and s.parent.span_id == send.context.span_id
        assert (s.attributes or {})["messaging.message.id"] == str(msg.id)
    first = attempts[0]
    assert first.status.status_code == StatusCode.ERROR
    assert (first.attributes or {})["error.type"] == "ValueError"
    assert [e.name for e in first.events] == ["exception", "retry"]
    assert attempts[2].status.status_code == StatusCode.UNSET

    outcomes = {
        p.attributes["messaging.pgqrs.outcome"]: p.value
        for p in otel.points("pgqrs.worker.messages")
    }
    assert outcomes == {"retried": 2, "completed": 1}
    (failures,) = otel.points("pgqrs.worker.failures")
    assert failures.value == 1 and failures.attributes["error.type"] == "ValueError"
    durations = otel.points("messaging.process.duration")  # one point per outcome
    assert sum(p.count for p in durations) == 3 and wait_count(otel) == 1


def wait_count(otel: Telemetry) -> int:
    (wait,) = otel.points("pgqrs.worker.queue_wait")
    return int(wait.count)


async def test_dead_and_interrupted_outcomes_are_errors(
    otel: Telemetry, queue: str, config: pgqrs.Config
) -> None:
    async with pgqrs.aio.Producer(config, queue) as producer:
        dead = await producer.enqueue({"abort": True})
        stuck = await producer.enqueue({"abort": False})
    worker = pgqrs.aio.Worker(config, poll_interval=0.05, grace_period=0.1)
    running = asyncio.Event()

    @worker.handler(queue, concurrency=2)
    async def handle(m: pgqrs.Message) -> None:
        if m.payload["abort"]:
            raise pgqrs.Abort("no")
        running.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(worker.run())
    await until(lambda: running.is_set() and otel.spans(f"process {queue}"), what="dead + running")
    worker.stop()
    await asyncio.wait_for(task, 15)
    by_id = {
        (s.attributes or {})["messaging.message.id"]: s for s in otel.spans(f"process {queue}")
    }
    d, c = by_id[str(dead.id)], by_id[str(stuck.id)]
    assert (d.attributes or {})["messaging.pgqrs.outcome"] == "dead"
    assert d.status.status_code == StatusCode.ERROR and (d.attributes or {})["error.type"] == (
        "Abort"
    )
    assert (c.attributes or {})["messaging.pgqrs.outcome"] == "interrupted"
    assert c.status.status_code == StatusCode.ERROR
    outcomes = {
        p.attributes["messaging.pgqrs.outcome"]: p.value
        for p in otel.points("pgqrs.worker.messages")
    }
    assert outcomes == {"dead": 1, "interrupted": 1}


async def test_lease_extensions_and_lost_leases_are_counted(
    otel: Telemetry,
    queue: str,
    config: pgqrs.Config,
    sql: psycopg.Connection[tuple[object, ...]],
    schema: str,
) -> None:
    """The lease keeper's extensions, and a lease found gone when it came to
    extend it, by queue (pgqrs.worker.lease_extensions / leases_lost)."""
    async with pgqrs.aio.Producer(config, queue) as producer:
        await producer.enqueue({"slow": True})
    worker = pgqrs.aio.Worker(config, poll_interval=0.05)
    release = asyncio.Event()

    @worker.handler(queue, visibility_timeout=1)
    async def handle(m: pgqrs.Message) -> None:
        await release.wait()

    def total(metric: str) -> int:
        points = otel.points(metric)
        for p in points:
            assert p.attributes == {
                "messaging.system": "pgqrs",
                "messaging.destination.name": queue,
            }
        return sum(int(p.value) for p in points)

    task = asyncio.create_task(worker.run())
    try:
        extended = worker.signals.lease_extended
        await extended.wait(lambda: extended.count >= 2, timeout=15)
        assert total("pgqrs.worker.lease_extensions") >= 2
        # Another consumer's lease now (as after an expiry and a redelivery).
        sql.execute(f'UPDATE "{schema}".messages SET lease = gen_random_uuid()')
        await until(lambda: total("pgqrs.worker.leases_lost") == 1, what="the lost lease")
    finally:
        release.set()
        await until(lambda: worker.counters.lease_lost == 1, what="the refused outcome")
        worker.stop()
        await asyncio.wait_for(task, 15)


def test_uninstrumented_enqueue_adds_no_headers(queue: str, config: pgqrs.Config) -> None:
    """After uninstrument(): no span, no traceparent, the plain insert path."""
    t = Telemetry()
    pgqrs.otel.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    pgqrs.otel.uninstrument()
    with t.tracer.start_as_current_span("request"), pgqrs.Producer(config, queue) as producer:
        msgs = producer.enqueue_batch([1, 2])
    assert [m.headers for m in msgs] == [{}, {}]
    assert t.spans() == [s for s in t.spans() if s.name == "request"]
    assert trace.get_current_span() is trace.INVALID_SPAN
    json.dumps([m.id for m in msgs])


def test_the_worked_example_prints_one_trace(config: pgqrs.Config, admin: pgqrs.Admin) -> None:
    """examples/telemetry.py (quoted in docs/telemetry.md) runs: one trace, four spans."""
    example = Path(__file__).resolve().parents[1] / "examples" / "telemetry.py"
    env = {**os.environ, "PGQRS_DSN": config.dsn, "PGQRS_SCHEMA": config.schema}
    out = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = [line.strip() for line in out.stdout.splitlines() if " trace=" in line]
    assert [line.split(" trace=")[0] for line in lines] == [
        "POST /signup [INTERNAL]",
        "send emails [PRODUCER]",
        "process emails [CONSUMER]",
        "smtp send [INTERNAL]",
    ], out.stdout
    assert len({line.split(" trace=")[1] for line in lines}) == 1
