"""One trace across languages: Rust producer -> Python worker, Python producer ->
Rust worker (rust/examples/otel_trace.rs, feature ``otel``), plus the crate's
own telemetry unit tests under that feature."""

from __future__ import annotations

import asyncio
import re
import subprocess
from typing import Any

import psycopg
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.trace import SpanKind

import pgqrs
import pgqrs.aio
from test_rust import _drop_rust_test_schemas, cargo
from test_telemetry import Telemetry, otel, run_until  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def example(mode: str, queue: str, config: pgqrs.Config) -> subprocess.CompletedProcess[str]:
    proc = cargo(
        "run",
        "--quiet",
        "--features",
        "otel",
        "--example",
        "otel_trace",
        "--",
        mode,
        queue,
        env={"PGQRS_DSN": config.dsn, "PGQRS_SCHEMA": config.schema},
    )
    assert proc.returncode == 0, f"otel_trace {mode} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def fields(out: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", out))


async def test_rust_producer_to_python_worker(
    otel: Telemetry,  # noqa: F811
    queue: str,
    config: pgqrs.Config,
) -> None:
    seen = fields(example("enqueue", queue, config).stdout)
    trace_id, message = seen["trace_id"], seen["message"]
    version, tp_trace, tp_span, _flags = seen["traceparent"].split("-")
    assert (version, tp_trace) == ("00", trace_id)

    worker = pgqrs.aio.Worker(config, poll_interval=0.05)
    handled: list[Any] = []
    worker.handler(queue)(handled.append)
    await run_until(worker, lambda: otel.spans(f"process {queue}"), "the process span")
    (process,) = otel.spans(f"process {queue}")
    assert process.kind == SpanKind.CONSUMER
    assert f"{process.context.trace_id:032x}" == trace_id
    assert process.parent is not None and f"{process.parent.span_id:016x}" == tp_span
    assert (process.attributes or {})["messaging.message.id"] == message
    assert handled[0].payload == {"from": "rust"}


async def test_python_producer_to_rust_worker(
    otel: Telemetry,  # noqa: F811
    queue: str,
    config: pgqrs.Config,
) -> None:
    with otel.tracer.start_as_current_span("python request") as request:
        async with pgqrs.aio.Producer(config, queue) as producer:
            msg = await producer.enqueue({"from": "python"})
    trace_id = f"{request.get_span_context().trace_id:032x}"
    out = await asyncio.to_thread(example, "work", queue, config)
    assert fields(out.stdout) == {"trace_id": trace_id, "message": str(msg.id)}, out.stdout


def test_crate_telemetry_unit_tests() -> None:
    proc = cargo("test", "--features", "otel", "--lib", "telemetry", env={})
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "1 passed" in proc.stdout, proc.stdout


def test_rust_worker_metrics(dsn: str, sql: psycopg.Connection[tuple[object, ...]]) -> None:
    """rust/tests/metrics.rs: the Rust worker's instruments and attributes
    (Python's names) through the SDK's in-memory exporter."""
    try:
        proc = cargo("test", "--features", "otel", "--test", "metrics", env={"PGQRS_TEST_DSN": dsn})
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
        assert "1 passed" in proc.stdout, proc.stdout
    finally:
        _drop_rust_test_schemas(sql)
