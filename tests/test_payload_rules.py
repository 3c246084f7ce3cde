"""Issue 15, fault 1: payload rules at the door, and poison rows read safely.

The rules (docs/payloads.md): arrays and objects nest at most 64 levels, and
every number is finite as a 64-bit float. Both clients refuse what breaks them
before any round trip, the server functions refuse it from any other caller
(SQLSTATE 22023, PayloadError), and a row written by other means (here: the
schema owner's plain INSERT) is dead-lettered alone with a PayloadError record
while the rest of its batch is delivered, by Consumer.dequeue and by the
Python and Rust workers, which keep running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgqrs
from _drivers import DriverError, PythonDriver, RustDriver, build_conformance_binary

Conn = psycopg.Connection[tuple[Any, ...]]

NESTED_65 = "[" * 65 + "]" * 65
#: What the issue found: nested 200 (every Rust dequeue failed), 1,000 (Python's
#: RecursionError), a 5,000-digit number (Python's ValueError; PostgreSQL
#: stores 1e5000 so).
POISON = {
    "nested-200": "[" * 200 + "]" * 200,
    "nested-1000": '{"a":' * 1000 + "1" + "}" * 1000,
    "digits-5000": '{"n": ' + "1" * 5000 + "}",
    "digits-400": '{"n": -' + "9" * 400 + ".5}",
}


def eventually(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def insert_raw(sql: Conn, schema: str, queue: str, texts: list[str]) -> list[int]:
    """Rows written past the functions (the owner's INSERT): no rule is checked."""
    ids = []
    for text in texts:
        row = sql.execute(
            f'INSERT INTO "{schema}".messages (queue, payload) VALUES (%s, %s::jsonb) RETURNING id',
            (queue, text),
            prepare=False,  # through pgBouncer (transaction mode): no prepared statements
        ).fetchone()
        assert row is not None
        ids.append(row[0])
    return ids


def archived(sql: Conn, schema: str, ids: list[int]) -> dict[int, tuple[str, Any]]:
    rows = sql.execute(
        f'SELECT id, status, error FROM "{schema}".archive WHERE id = ANY(%s)',
        (ids,),
        prepare=False,
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


# -- at the door ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('{"n": 1e5000}', id="1e5000-as-text"),
        pytest.param('{"n": NaN}', id="nan-as-text"),
        pytest.param(NESTED_65, id="nested-65-as-text"),
        pytest.param({"n": 10**400}, id="int-400-digits"),
        pytest.param({"n": -(10**309)}, id="negative-int-310-digits"),
    ],
)
def test_the_python_producer_refuses_payloads_breaking_the_rules(
    config: pgqrs.Config, queue: str, payload: Any
) -> None:
    with pgqrs.Producer(config, queue) as p:
        with pytest.raises(pgqrs.PayloadError, match=r"64 levels|64-bit float|NaN"):
            p.enqueue(payload)
        with pytest.raises(pgqrs.PayloadError):
            p.enqueue({"ok": 1}, headers={"deep": json.loads(NESTED_65)})
        # At the limits: accepted.
        p.enqueue("[" * 64 + "]" * 64)
        p.enqueue({"n": int("9" * 308), "f": 1.7976931348623157e308, "g": -1e308})


@pytest.fixture(scope="module")
def rust_binary() -> Path:
    return build_conformance_binary()


def test_the_rust_producer_refuses_payloads_breaking_the_rules(
    rust_binary: Path, dsn: str, schema: str, queue: str
) -> None:
    rust = RustDriver(rust_binary, dsn, schema)
    with pytest.raises(DriverError) as refused:
        rust.enqueue(queue, json.loads(NESTED_65))
    assert str(refused.value).startswith("PayloadError"), refused.value
    with pytest.raises(DriverError) as refused:
        rust.enqueue(queue, {"n": 10**400})
    assert str(refused.value).startswith("PayloadError"), refused.value
    rust.enqueue(queue, json.loads("[" * 64 + "]" * 64))


@pytest.mark.parametrize("text", [*POISON.values(), NESTED_65, '{"n": 1e400}', '{"n": -2e308}'])
def test_the_server_functions_refuse_payloads_breaking_the_rules(
    sql: Conn, admin: pgqrs.Admin, schema: str, queue: str, text: str
) -> None:
    """For callers other than the clients (a role calling the functions itself)."""
    calls = [
        (
            f'SELECT * FROM "{schema}".message_insert(%s, %s, 0, NULL, NULL, NULL, NULL)',
            (queue, f"[{text}]"),
        ),
        (
            f'SELECT * FROM "{schema}".message_enqueue(%s, %s, %s, NULL, NULL, NULL, NULL, NULL)',
            (queue, [text], [0]),
        ),
        (
            f'SELECT * FROM "{schema}".message_insert(%s, %s, 0, NULL, NULL, %s, NULL)',
            (queue, "[1]", '{"h": ' + text + "}"),
        ),
    ]
    for statement, params in calls:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"64 levels|64-bit float"):
            sql.execute(statement, params)
    assert admin.queue_stats(queue).ready == 0


def test_the_server_accepts_payloads_at_the_limits(sql: Conn, schema: str, queue: str) -> None:
    at_limits = [
        "[" * 64 + "]" * 64,
        '{"n": 1e308, "m": -' + "9" * 308 + ', "s": "' + "9" * 400 + '"}',
    ]
    rows = sql.execute(
        f'SELECT * FROM "{schema}".message_insert(%s, %s, 0, NULL, NULL, NULL, NULL)',
        (queue, "[" + ",".join(at_limits) + "]"),
    ).fetchall()
    assert len(rows) == 2


# -- reading poison rows ----------------------------------------------------------------


def test_a_poison_row_is_dead_lettered_alone_and_the_batch_delivered(
    sql: Conn, config: pgqrs.Config, schema: str, queue: str
) -> None:
    """Consumer.dequeue(batch=...) before: ValueError/RecursionError for the whole
    batch, every message of it leased and stranded."""
    texts = []
    for name, poison in POISON.items():
        texts += [json.dumps({"innocent": f"before {name}"}), poison]
    texts.append(json.dumps({"innocent": "last"}))
    ids = insert_raw(sql, schema, queue, texts)
    poison_ids = ids[1::2]
    with pgqrs.Consumer(config, queue) as c:
        got = c.dequeue(batch=len(ids))
        assert sorted(m.id for m in got) == sorted(set(ids) - set(poison_ids))
        assert all(m.payload["innocent"] for m in got)
        c.archive_batch(got)
        assert c.dequeue(batch=10) == []
    dead = archived(sql, schema, poison_ids)
    assert set(dead) == set(poison_ids)
    for status, error in dead.values():
        assert status == "dead"
        assert error["type"] == "pgqrs.PayloadError"
        assert "cannot be read" in error["message"]


async def test_the_async_consumer_dead_letters_a_poison_row_too(
    sql: Conn, config: pgqrs.Config, schema: str, queue: str
) -> None:
    ids = insert_raw(sql, schema, queue, [POISON["nested-1000"], '{"ok": 1}'])
    async with pgqrs.aio.Consumer(config, queue) as c:
        got = await c.dequeue(batch=5)
    assert [m.id for m in got] == [ids[1]]
    assert archived(sql, schema, [ids[0]])[ids[0]][0] == "dead"


@pytest.mark.slow
def test_python_and_rust_workers_complete_innocent_jobs_around_poison_ones(
    sql: Conn, config: pgqrs.Config, rust_binary: Path, dsn: str, schema: str, queue: str
) -> None:
    """Both languages' workers on one queue; poison rows written by SQL as the
    schema owner between innocent ones. Before: the Python worker died
    (ValueError, RecursionError), the Rust worker's every dequeue failed."""
    texts = []
    for i in range(30):
        texts.append(json.dumps({"n": i}))
        if i % 4 == 0:
            texts.append(list(POISON.values())[(i // 4) % len(POISON)])
    ids = insert_raw(sql, schema, queue, texts)
    poison_ids = [i for i, t in zip(ids, texts, strict=True) if t in POISON.values()]
    innocent_ids = sorted(set(ids) - set(poison_ids))
    options = {"concurrency": 2, "poll_interval": 0.1, "grace_period": 5}
    python = PythonDriver(config)
    rust = RustDriver(rust_binary, dsn, schema)
    workers = [python.start_worker(queue, **options), rust.start_worker(queue, **options)]
    try:
        eventually(
            "every message archived",
            lambda: len(archived(sql, schema, ids)) == len(ids),
        )
        done = archived(sql, schema, ids)
        assert {i for i in innocent_ids if done[i][0] == "completed"} == set(innocent_ids)
        for i in poison_ids:
            status, error = done[i]
            assert status == "dead", (i, done[i])
            assert error["type"] == "pgqrs.PayloadError", error
        # Both still serve: a new innocent message is completed.
        more = insert_raw(sql, schema, queue, [json.dumps({"n": "after"})] * 4)
        eventually(
            "the messages enqueued afterwards completed",
            lambda: len(archived(sql, schema, more)) == len(more),
        )
        assert workers[1].proc.poll() is None  # type: ignore[attr-defined]
        assert workers[0].thread.is_alive()  # type: ignore[attr-defined]
    finally:
        for w in workers:
            w.stop()
        counts = [w.wait() for w in workers]
        python.close()
        rust.close()
    assert sum(c.completed for c in counts) == len(innocent_ids) + 4
