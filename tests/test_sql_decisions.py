"""The decisions made once in SQL, for both languages' workers and consumers:
``message_fail`` (retry with the backoff, or dead; fenced by lease),
``worker_alive`` (a pruned worker registers again under its id),
``message_dequeue`` filling its batch past exhausted rows, and the SQLSTATE
table ``sql/errors.tsv``. rust/tests/sql_decisions.rs and error.rs's tests
check the same from Rust.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from typing import Any

import psycopg
import pytest

import pgqrs
from pgqrs._async._calls import message_fail as amessage_fail
from pgqrs._async._db import Database as AsyncDatabase
from pgqrs._errors import error_kind, error_rules, translate
from pgqrs._ops import FailOutcome, Failure, Heartbeat
from pgqrs._sql import sql_dir
from pgqrs._sync._calls import message_fail, worker_alive
from pgqrs._sync._db import Database

NOW = datetime.datetime.now(datetime.timezone.utc)
NO_JITTER = {"backoff_base": 2.0, "backoff_max": 60.0, "backoff_jitter": 0.0}


def error_text(m: pgqrs.Message) -> str:
    return json.dumps({"e": m.id})


def one(sql: psycopg.Connection[Any], query: str, *params: Any) -> tuple[Any, ...]:
    row = sql.execute(query, list(params)).fetchone()
    assert row is not None
    return row


def test_message_fail_retries_with_the_backoff_or_buries_fenced_by_lease(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection[Any]
) -> None:
    s = config.schema
    admin.create_queue("q", max_attempts=3)
    with pgqrs.Producer(config, "q") as p, pgqrs.Consumer(config, "q") as c:
        p.enqueue_batch([0, 1, 2, 3, 4])
        got = c.dequeue(batch=5)
    assert len(got) == 5
    # The fifth was delivered max_attempts times: dead whatever its delay.
    sql.execute(f'UPDATE "{s}".messages SET attempts = 3 WHERE id = %s', [got[4].id])
    stranger = dataclasses.replace(got[3], lease=uuid.uuid4())
    ghost = dataclasses.replace(got[0], id=2**62)
    db = Database(config)
    try:
        out = message_fail(
            db,
            failures=[
                Failure(got[0], error_text(got[0])),
                Failure(got[1], error_text(got[1]), delay=7),
                Failure(got[2], error_text(got[2]), dead=True),
                Failure(stranger, error_text(got[3])),
                Failure(got[4], error_text(got[4]), delay=7),
                Failure(ghost),
            ],
            **NO_JITTER,
        )
    finally:
        db.close()
    assert out == [
        FailOutcome(got[0].id, "retried", 2.0, 1),
        FailOutcome(got[1].id, "retried", 7.0, 1),
        FailOutcome(got[2].id, "dead", None, 1),
        FailOutcome(got[3].id, "lease_lost", None, None),
        FailOutcome(got[4].id, "dead", None, 3),
        FailOutcome(2**62, "not_found", None, None),
    ]
    # Retried: no lease, visible after the delay, the error as last_error,
    # the attempt still counted.
    released, wait, last_error, attempts = one(
        sql,
        f"SELECT lease IS NULL, extract(epoch FROM visible_at - now())::float8, last_error, "
        f'attempts FROM "{s}".messages WHERE id = %s',
        got[0].id,
    )
    assert released and 1.0 <= wait <= 2.0 and attempts == 1
    assert last_error == {"e": got[0].id}
    # Dead: archived with the error given; the lease-lost one is untouched.
    dead = sql.execute(f'SELECT id, status, error FROM "{s}".archive ORDER BY id').fetchall()
    assert dead == [
        (got[2].id, "dead", {"e": got[2].id}),
        (got[4].id, "dead", {"e": got[4].id}),
    ]
    assert one(sql, f'SELECT lease FROM "{s}".messages WHERE id = %s', got[3].id) == (got[3].lease,)


async def test_message_fail_backoff_doubles_is_capped_and_jittered(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config, sql: psycopg.Connection[Any]
) -> None:
    """The asyncio call (what the worker awaits); the delay is today's worker's:
    base * 2**(attempts-1), capped at max, spread by +-jitter, capped again."""
    s = config.schema
    await aadmin.create_queue("q", max_attempts=100)
    db = AsyncDatabase(config)
    async with pgqrs.aio.Producer(config, "q") as p, pgqrs.aio.Consumer(config, "q") as c:

        async def delay_after(attempts: int, **backoff: float) -> float:
            await p.enqueue(attempts)
            m = await c.dequeue()
            assert m is not None
            sql.execute(f'UPDATE "{s}".messages SET attempts = %s WHERE id = %s', [attempts, m.id])
            [out] = await amessage_fail(db, failures=[Failure(m)], **backoff)
            assert (out.outcome, out.attempts) == ("retried", attempts)
            assert out.delay is not None
            return out.delay

        try:
            for attempts in (1, 2, 3, 5, 6, 40, 99):
                expected = min(60.0, 2.0 * 2 ** (attempts - 1))
                assert await delay_after(attempts, **NO_JITTER) == expected, attempts
            jittered = {"backoff_base": 10.0, "backoff_max": 1000.0, "backoff_jitter": 0.25}
            seen = [await delay_after(2, **jittered) for _ in range(8)]
            assert all(15.0 <= d <= 25.0 for d in seen), seen
            assert len(set(seen)) > 1, "jitter varies the delay"
            capped = {"backoff_base": 10.0, "backoff_max": 20.0, "backoff_jitter": 1.0}
            spread = [await delay_after(3, **capped) for _ in range(4)]
            assert all(0.0 <= d <= 20.0 for d in spread), spread
        finally:
            await db.close()


@pytest.mark.parametrize(
    ("backoff", "match"),
    [
        ({"backoff_base": 1.0, "backoff_max": 60.0, "backoff_jitter": 1.5}, "jitter.*1.5"),
        ({"backoff_base": 10.0, "backoff_max": 1.0, "backoff_jitter": 0.0}, "max .* base"),
        ({"backoff_base": -1.0, "backoff_max": 1.0, "backoff_jitter": 0.0}, "base"),
        ({"backoff_base": float("nan"), "backoff_max": 1.0, "backoff_jitter": 0.0}, "base"),
    ],
)
def test_message_fail_refuses_bad_backoffs_before_any_round_trip(
    config: pgqrs.Config, backoff: dict[str, float], match: str
) -> None:
    m = pgqrs.Message(1, "q", None, 0, 1, NOW, None, NOW, {}, uuid.uuid4())
    db = Database(config)  # never opened: the check comes first
    with pytest.raises(pgqrs.InvalidArgument, match=match):
        message_fail(db, failures=[Failure(m)], **backoff)
    with pytest.raises(pgqrs.InvalidArgument, match="twice"):
        message_fail(db, failures=[Failure(m), Failure(m)], **NO_JITTER)
    with pytest.raises(pgqrs.InvalidArgument, match="empty"):
        message_fail(db, failures=[], **NO_JITTER)


def test_worker_alive_registers_a_pruned_worker_again_under_its_id(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection[Any]
) -> None:
    s = config.schema
    (worker_id,) = one(
        sql,
        f'INSERT INTO "{s}".workers (hostname, pid, queues, status) '
        "VALUES ('h', 1, '{q}', 'dead') RETURNING id",
    )
    db = Database(config)
    try:
        common = {"hostname": "h", "pid": 1, "queues": ["q", "r"], "listening": True}
        # A worker marked dead comes back to life; not registered again.
        beat = worker_alive(db, worker_id=worker_id, status="running", **common)  # type: ignore[arg-type]
        assert beat == Heartbeat("running", registered=False)
        # Pruned: registered again with the same id and what the heartbeat carries.
        sql.execute(f'DELETE FROM "{s}".workers WHERE id = %s', [worker_id])
        beat = worker_alive(
            db,
            worker_id=worker_id,
            status="stopping",
            hostname="host2",
            pid=42,
            queues=["q", "r"],
            listening=False,
        )
        assert beat == Heartbeat("stopping", registered=True)
        assert sql.execute(
            f'SELECT id, hostname, pid, queues, listening, status FROM "{s}".workers'
        ).fetchall() == [(worker_id, "host2", 42, ["q", "r"], False, "stopping")]
        assert [w.id for w in admin.list_workers()] == [worker_id]
        with pytest.raises(pgqrs.InvalidArgument, match="'stopped'"):
            worker_alive(db, worker_id=worker_id, status="stopped", **common)  # type: ignore[arg-type]
    finally:
        db.close()


def test_dequeue_fills_its_batch_past_exhausted_rows_in_one_call(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection[Any]
) -> None:
    """Rows delivered max_attempts times go to the archive inside message_dequeue,
    which keeps taking rows: one call returns a full batch (no client loop)."""
    s = config.schema
    admin.create_queue("q", max_attempts=1)
    with pgqrs.Producer(config, "q") as p:
        for priority in (9, 8, 7, 6, 5, 4):
            p.enqueue(priority, priority=priority)
    # 9 and 7 (and 4) were delivered once already: exhausted, between live ones.
    sql.execute(f'UPDATE "{s}".messages SET attempts = 1 WHERE priority IN (9, 7, 4)')
    rows = sql.execute(f"SELECT outcome, payload FROM \"{s}\".message_dequeue('q', 3, NULL, NULL)")
    assert rows.fetchall() == [
        ("dead", None),
        ("leased", 8),
        ("dead", None),
        ("leased", 6),
        ("leased", 5),
    ]
    assert admin.queue_stats("q").archived == {"dead": 2}
    # Through the Consumer: the batch is filled past the last exhausted row.
    sql.execute(f'UPDATE "{s}".messages SET visible_at = now(), attempts = 0 WHERE priority = 8')
    with pgqrs.Consumer(config, "q") as c:
        got = c.dequeue(batch=5)
    assert [m.payload for m in got] == [8]
    assert admin.queue_stats("q").archived == {"dead": 3}
    # A missing queue is one 'missing' row; a paused one, none.
    missing = sql.execute(f"SELECT outcome FROM \"{s}\".message_dequeue('nope', 3, NULL, NULL)")
    assert missing.fetchall() == [("missing",)]
    admin.pause_queue("q")
    paused = sql.execute(f"SELECT outcome FROM \"{s}\".message_dequeue('q', 3, NULL, NULL)")
    assert paused.fetchall() == []


def test_errors_tsv_every_row_maps_to_its_kind() -> None:
    """Each row of the table (the Rust crate checks the same rows) gives its kind
    through translate(), from a psycopg error of that SQLSTATE."""
    rules = error_rules()
    assert len(rules) >= 15
    lines = [
        line.split("\t")
        for line in (sql_dir() / "errors.tsv").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith(("#", "sqlstate\t"))
    ]
    assert [fields[0] for fields in lines] == list(rules)
    for code, condition, kind, when in lines:
        sqlstate = code if len(code) == 5 else code + "000"
        try:
            exc_class = psycopg.errors.lookup(sqlstate)
        except KeyError:  # pgqrs's own SQLSTATE (PQ001), raised by its server functions
            base = psycopg.errors.DatabaseError
            exc_class = type(f"E{sqlstate}", (base,), {"sqlstate": sqlstate})
        text = (
            "violates check constraint queues_name_valid" if when.startswith("constraint") else "x"
        )
        exc = exc_class(text)
        assert exc.sqlstate == sqlstate, condition
        translated = translate(exc, schema="s", queue="q" if when == "queue" else None)
        assert type(translated).__name__ == kind, (code, condition)
        if when != "-":
            assert type(translate(exc_class("x"), schema="s")).__name__ == "DatabaseError"
    assert error_kind("22003") == "PayloadError"
    assert error_kind("40P01") == "ConnectionFailed"
    assert error_kind("55P03") == error_kind("XX000") == "DatabaseError"


def test_a_json_number_too_large_is_a_payload_error(sql: psycopg.Connection[Any]) -> None:
    """22003 numeric_value_out_of_range is what PostgreSQL says of a JSON number
    beyond numeric's range: PayloadError, in both clients (error.rs said
    DatabaseError before errors.tsv)."""
    with pytest.raises(psycopg.errors.NumericValueOutOfRange) as caught:
        sql.execute("SELECT '1e1000000'::jsonb")
    assert isinstance(translate(caught.value, schema="s"), pgqrs.PayloadError)
