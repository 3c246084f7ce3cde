"""Cross-language conformance: the Rust and the Python clients on one database.

The Rust side is ``rust/examples/conformance.rs``, a small binary doing one
pgqrs action per invocation (configured through ``PGQRS_DSN``/``PGQRS_SCHEMA``,
that is ``Config::from_env``). Here: what only makes sense across the two
languages (either client installing and verifying for the other, payloads
round-tripping as equal JSON values, queue settings and errors). Behaviour
both languages share (delivery, dedup, leases, retries, the worker) is one
list of scenarios run against each, in tests/test_scenarios.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgqrs
from _drivers import DriverError, RustDriver, build_conformance_binary
from pgqrs._sql import functions, migrations

RustRun = Callable[..., Any]


#: A pgqrs error reported by the Rust binary: ``kind`` is the Python exception name.
RustError = DriverError


@pytest.fixture(scope="session")
def rust_binary() -> Path:
    """The conformance example, built once per session."""
    return build_conformance_binary()


@pytest.fixture
def rust(rust_binary: Path, dsn: str, schema: str) -> RustRun:
    """Run one Rust action on this test's schema; return its JSON or raise RustError."""
    return RustDriver(rust_binary, dsn, schema).run


@pytest.fixture
def consumer(config: pgqrs.Config, queue: str) -> Iterator[pgqrs.Consumer]:
    with pgqrs.Consumer(config, queue) as c:
        yield c


@pytest.fixture
def producer(config: pgqrs.Config, queue: str) -> Iterator[pgqrs.Producer]:
    with pgqrs.Producer(config, queue) as p:
        yield p


# JSON values that jsonb stores without changing them (it normalises numbers
# written with exponents, so those are left out on purpose).
PAYLOADS: list[Any] = [
    {"task": "send_email", "to": "user@example.com"},
    {
        "unicode": "héllo wörld ✓ 日本語 😀 \u00e9\u0301",
        "escapes": 'quote " backslash \\ newline \n tab \t',
    },
    {"big": 2**70, "neg": -(2**80), "huge": 10**30, "i64max": 2**63 - 1, "u64max": 2**64 - 1},
    {"floats": [0.1, 1.25, -0.5, 1e-07, 3.141592653589793]},
    {"nested": {"a": [1, [2, [3, {"b": None, "c": [True, False]}]]], "empty": {}, "list": []}},
    [1, "two", 3.5, None, {"k": "v"}],
    "a plain string",
    12345678901234567890123,
    True,
    None,
]


def test_rust_install_then_python_verify(rust: RustRun, config: pgqrs.Config) -> None:
    assert rust("install") == {
        "applied": [
            *(f"{m.version:04d}_{m.name}" for m in migrations()),
            *(f"function {f.name}" for f in functions()),
        ]
    }
    with pgqrs.Admin(config) as admin:
        report = admin.verify()
        assert report.ok, report.describe()
        assert admin.install() == [], "Python sees Rust's install as complete"
    assert rust("install") == {"applied": []}
    # A function changed since it was recorded: both clients say so, and
    # Rust's install re-creates it for Python too.
    with psycopg.connect(config.dsn, autocommit=True) as conn:
        conn.execute(
            f"UPDATE \"{config.schema}\".schema_functions SET checksum = 'x' "
            "WHERE name = 'message_fail'"
        )
    assert rust("verify")["modified"] == ["function message_fail"]
    with pgqrs.Admin(config) as admin:
        assert admin.verify().modified == ["function message_fail"]
    assert rust("install") == {"applied": ["function message_fail"]}
    with pgqrs.Admin(config) as admin:
        assert admin.verify().ok


def test_python_install_then_rust_verify(rust: RustRun, admin: pgqrs.Admin) -> None:
    report = rust("verify")
    assert report["ok"], report
    assert report["current_version"] == report["latest_version"] == len(migrations())
    assert rust("install") == {"applied": []}


def test_rust_uninstall_then_python_sees_nothing(rust: RustRun, admin: pgqrs.Admin) -> None:
    rust("uninstall")
    assert not admin.verify().installed
    with pytest.raises(RustError) as exc:
        rust("create-queue", "tasks")
    assert exc.value.kind == "SchemaNotInstalled"


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_payload_round_trips_both_ways(
    rust: RustRun, producer: pgqrs.Producer, consumer: pgqrs.Consumer, payload: Any
) -> None:
    # Rust -> Python
    sent = rust("enqueue", "tasks", json.dumps(payload))
    assert sent["payload"] == payload
    msg = consumer.dequeue()
    assert msg is not None and msg.id == sent["id"]
    assert msg.payload == payload
    assert json.dumps(msg.payload, sort_keys=True) == json.dumps(payload, sort_keys=True)
    consumer.archive(msg)
    # Python -> Rust (a str payload is JSON text in Python, so encode it first)
    py_sent = producer.enqueue(json.dumps(payload) if isinstance(payload, str) else payload)
    got = rust("dequeue", "tasks")
    assert got["id"] == py_sent.id
    assert got["payload"] == payload
    assert json.dumps(got["payload"], sort_keys=True) == json.dumps(payload, sort_keys=True)


def test_rust_queue_python_settings_and_errors(rust: RustRun, admin: pgqrs.Admin) -> None:
    rust("create-queue", "emails", "--vt", 12.5, "--max-attempts", 2)
    info = admin.get_queue("emails")
    assert (info.visibility_timeout, info.max_attempts) == (12.5, 2)
    with pytest.raises(RustError) as exc:
        rust("create-queue", "emails")
    assert exc.value.kind == "QueueExists"
    with pytest.raises(pgqrs.QueueExists):
        admin.create_queue("emails")
    with pytest.raises(RustError) as exc:
        rust("enqueue", "missing", "1")
    assert exc.value.kind == "QueueNotFound"
    with pytest.raises(RustError) as exc:
        rust("enqueue", "bad name", "1")
    assert exc.value.kind == "InvalidQueueName"
