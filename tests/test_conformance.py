"""Cross-language conformance: the Rust and the Python clients on one database.

The Rust side is ``rust/examples/conformance.rs``, a small binary doing one
pgqrs action per invocation (configured through ``PGQRS_DSN``/``PGQRS_SCHEMA``,
that is ``Config::from_env``), so each scenario interleaves the two clients
step by step: Rust producer and Python consumer and the reverse, stale
archives refused across languages, payloads round-tripping as equal JSON
values, dedup keys shared, and either client installing for the other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgqrs
from pgqrs._sql import functions, migrations

RUST_DIR = Path(__file__).resolve().parents[1] / "rust"
#: Seconds a scenario waits for a condition (a lease to expire, ...) before failing.
DEADLINE = 15.0

RustRun = Callable[..., Any]


class RustError(Exception):
    """A pgqrs error reported by the Rust binary: ``kind`` is the Python exception name."""

    def __init__(self, kind: str, message: str, ids: list[int]) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.ids = ids


@pytest.fixture(scope="session")
def rust_binary() -> Path:
    """The conformance example, built once per session."""
    cargo = shutil.which("cargo")
    assert cargo, "cargo is required for the Rust conformance tests (install the Rust toolchain)"
    subprocess.run(
        [cargo, "build", "--quiet", "--example", "conformance"],
        cwd=RUST_DIR,
        check=True,
        timeout=900,
    )
    binary = RUST_DIR / "target" / "debug" / "examples" / "conformance"
    assert binary.exists()
    return binary


@pytest.fixture
def rust(rust_binary: Path, dsn: str, schema: str) -> RustRun:
    """Run one Rust action on this test's schema; return its JSON or raise RustError."""

    def run(*args: object) -> Any:
        env = {**os.environ, "PGQRS_DSN": dsn, "PGQRS_SCHEMA": schema}
        proc = subprocess.run(
            [str(rust_binary), *map(str, args)], env=env, capture_output=True, text=True, timeout=60
        )
        if proc.returncode == 2:
            err = json.loads(proc.stdout)
            raise RustError(err["error"], err["message"], err["ids"])
        assert proc.returncode == 0, f"conformance {args} failed: {proc.stderr}{proc.stdout}"
        return json.loads(proc.stdout)

    return run


@pytest.fixture
def consumer(config: pgqrs.Config, queue: str) -> Iterator[pgqrs.Consumer]:
    with pgqrs.Consumer(config, queue) as c:
        yield c


@pytest.fixture
def producer(config: pgqrs.Config, queue: str) -> Iterator[pgqrs.Producer]:
    with pgqrs.Producer(config, queue) as p:
        yield p


def eventually(what: str, check: Callable[[], Any]) -> Any:
    """Poll ``check`` until it returns something truthy, failing after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


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
        "applied": ["0001_init", *(f"function {f.name}" for f in functions())]
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


def test_rust_producer_python_consumer(
    rust: RustRun, consumer: pgqrs.Consumer, admin: pgqrs.Admin
) -> None:
    sent = rust(
        "enqueue", "tasks", json.dumps({"job": 1}), "--priority", 5, "--headers", '{"trace":"r"}'
    )
    rust("enqueue", "tasks", json.dumps({"job": 0}))
    msg = consumer.dequeue()
    assert msg is not None
    assert (msg.id, msg.payload, msg.priority, msg.headers) == (
        sent["id"],
        {"job": 1},
        5,
        {"trace": "r"},
    )
    consumer.archive(msg, "completed")
    assert [a.id for a in admin.list_archive("tasks", status="completed")] == [sent["id"]]


def test_python_producer_rust_consumer(
    rust: RustRun, producer: pgqrs.Producer, admin: pgqrs.Admin
) -> None:
    sent = producer.enqueue({"job": "py"}, headers={"trace": "p"})
    got = rust("dequeue", "tasks")
    assert (got["id"], got["payload"], got["headers"], got["attempts"]) == (
        sent.id,
        {"job": "py"},
        {"trace": "p"},
        1,
    )
    assert rust("dequeue", "tasks") is None, "leased: invisible to the next dequeue"
    rust("archive", "tasks", got["id"], got["lease"], "--result", '{"sent":true}')
    archived = admin.list_archive("tasks")
    assert [(a.id, a.status, a.result) for a in archived] == [
        (sent.id, "completed", {"sent": True})
    ]


def test_stale_rust_archive_refused_after_python_took_the_lease(
    rust: RustRun, consumer: pgqrs.Consumer, admin: pgqrs.Admin
) -> None:
    sent = rust("enqueue", "tasks", '{"n":1}')
    stale = rust("dequeue", "tasks", "--vt", 0.3)
    taken = eventually("the Rust lease to expire", lambda: consumer.dequeue(visibility_timeout=30))
    assert taken.id == sent["id"] and str(taken.lease) != stale["lease"]
    for action in ("archive", "delete", "release"):
        with pytest.raises(RustError) as exc:
            rust(action, "tasks", stale["id"], stale["lease"])
        assert exc.value.kind == "LeaseExpired" and exc.value.ids == [sent["id"]]
    assert admin.queue_stats("tasks").in_flight == 1, "the row was left to its new owner"
    consumer.archive(taken, "completed")


def test_stale_python_archive_refused_after_rust_took_the_lease(
    rust: RustRun, producer: pgqrs.Producer, consumer: pgqrs.Consumer, admin: pgqrs.Admin
) -> None:
    sent = producer.enqueue({"n": 2})
    stale = consumer.dequeue(visibility_timeout=0.3)
    assert stale is not None
    taken = eventually("the Python lease to expire", lambda: rust("dequeue", "tasks", "--vt", 30))
    assert taken["id"] == sent.id and taken["lease"] != str(stale.lease)
    with pytest.raises(pgqrs.LeaseExpired) as exc:
        consumer.archive(stale, "completed")
    assert exc.value.ids == [sent.id]
    assert admin.queue_stats("tasks").in_flight == 1
    rust("archive", "tasks", taken["id"], taken["lease"])
    assert admin.queue_stats("tasks").archived == {"completed": 1}


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


def test_dedup_keys_are_shared(
    rust: RustRun, producer: pgqrs.Producer, consumer: pgqrs.Consumer
) -> None:
    py = producer.enqueue({"from": "python"}, dedup_key="invoice-1")
    dup = rust("enqueue", "tasks", '{"from":"rust"}', "--dedup", "invoice-1")
    assert (dup["id"], dup["inserted"], dup["payload"]) == (py.id, False, {"from": "python"})

    rs = rust("enqueue", "tasks", '{"from":"rust"}', "--dedup", "invoice-2")
    again = producer.enqueue({"from": "python"}, dedup_key="invoice-2")
    assert (again.id, again.inserted, again.payload) == (rs["id"], False, {"from": "rust"})

    batch = rust("enqueue-batch", "tasks", "[1,2]", "--dedup-keys", '["invoice-1","invoice-3"]')
    assert [(m["id"] == py.id, m["inserted"]) for m in batch] == [(True, False), (False, True)]

    # Once archived (by Python), the key is free for Rust again.
    for _ in range(3):
        msg = consumer.dequeue()
        assert msg is not None
        consumer.archive(msg)
    fresh = rust("enqueue", "tasks", '{"from":"rust"}', "--dedup", "invoice-1")
    assert fresh["inserted"] and fresh["id"] != py.id


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


def test_dead_after_max_attempts_across_languages(
    rust: RustRun, config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    admin.create_queue("flaky", max_attempts=2)
    sent = rust("enqueue", "flaky", '{"n":1}')
    first = rust("dequeue", "flaky")
    rust("release", "flaky", first["id"], first["lease"])
    with pgqrs.Consumer(config, "flaky") as consumer:
        second = consumer.dequeue()
        assert second is not None and second.attempts == 2
        consumer.release(second)
        assert consumer.dequeue() is None
    assert rust("dequeue", "flaky") is None
    dead = admin.list_archive("flaky", status="dead")
    assert [d.id for d in dead] == [sent["id"]]


def test_rust_worker_runs_python_jobs(
    rust: RustRun, producer: pgqrs.Producer, admin: pgqrs.Admin
) -> None:
    sent = producer.enqueue_batch([{"n": i, "text": "é✓"} for i in range(5)])
    failing = producer.enqueue({"fail": True})
    assert rust("work", "tasks", 6) == {"completed": 5, "dead": 1}
    done = {a.id: a for a in admin.list_archive("tasks", limit=10)}
    for m in sent:
        assert (done[m.id].status, done[m.id].result) == ("completed", {"echo": m.payload})
    assert done[failing.id].status == "dead"
    error = done[failing.id].error
    assert (error["type"], error["message"], error["attempt"]) == (
        "pgqrs.Abort",
        "asked to fail",
        1,
    )
    workers = admin.list_workers()
    assert [w.status for w in workers] == ["stopped"]
