"""Behaviour Python and Rust share, written once and run against both.

Each scenario takes drivers (tests/_drivers.py) by language name: a client
scenario runs for every producer/consumer pairing, or for the two mixed ones
(Python then Rust, Rust then Python) when a same-language pair adds nothing;
a worker scenario runs each language's worker on messages the other language
produced. Conditions are awaited with ``eventually`` (polling the database,
the one thing both drivers' processes share), never a fixed sleep.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgqrs
from _drivers import Driver, DriverError, PythonDriver, RustDriver, build_conformance_binary

Conn = psycopg.Connection[tuple[Any, ...]]

LANGS = ["python", "rust"]
#: Every producer/consumer (or first/second) pairing.
PAIRS = list(itertools.product(LANGS, LANGS))
#: One language then the other, both ways.
MIXED = [("python", "rust"), ("rust", "python")]
#: Seconds a scenario waits for a condition before failing.
DEADLINE = 20.0
#: Worker options that keep the scenarios quick.
QUICK: dict[str, Any] = {
    "concurrency": 4,
    "poll_interval": 0.1,
    "backoff": {"base": 0.05, "max": 0.2, "jitter": 0},
    "grace_period": 5,
}


def other(lang: str) -> str:
    return "rust" if lang == "python" else "python"


def eventually(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def rust_binary() -> Path:
    return build_conformance_binary()


@pytest.fixture
def drivers(
    rust_binary: Path, config: pgqrs.Config, dsn: str, schema: str, queue: str
) -> Iterator[dict[str, Driver]]:
    """Both drivers on this test's (installed) schema, with the queue "tasks"."""
    both: dict[str, Driver] = {
        "python": PythonDriver(config),
        "rust": RustDriver(rust_binary, dsn, schema),
    }
    yield both
    for d in both.values():
        d.close()


class Db:
    """The schema's tables, read directly (both drivers' processes write them)."""

    def __init__(self, sql: Conn, schema: str) -> None:
        self.sql = sql
        self.schema = schema

    def value(self, query: str, *params: Any) -> Any:
        row = self.sql.execute(query.replace("{s}", f'"{self.schema}"'), params).fetchone()
        assert row is not None
        return row[0]

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.sql.execute(query.replace("{s}", f'"{self.schema}"'), params).fetchall()

    def archived(self, status: str = "completed") -> int:
        return int(self.value("SELECT count(*) FROM {s}.archive WHERE status = %s", status))

    def leased(self) -> int:
        return int(
            self.value(
                "SELECT count(*) FROM {s}.messages WHERE lease IS NOT NULL AND visible_at > now()"
            )
        )

    def running_worker(self) -> int | None:
        rows = self.rows("SELECT id FROM {s}.workers WHERE status = 'running'")
        return rows[0][0] if len(rows) == 1 else None


@pytest.fixture
def db(sql: Conn, schema: str) -> Db:
    return Db(sql, schema)


# -- flow control (issue 17) ---------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_flow_limits_hold_across_languages(
    drivers: dict[str, Driver], admin: pgqrs.Admin, db: Db, first: str, second: str
) -> None:
    """One language's leases count against the other's dequeue: the limits
    live in the server's dequeue, with the group given at enqueue."""
    a, b = drivers[first], drivers[second]
    admin.update_queue("tasks", concurrency_limit=3, group_concurrency=1)
    for i in range(3):
        for g in ("t1", "t2"):
            b.enqueue("tasks", {"g": g, "i": i}, group=g)
    got, wait = a.dequeue_batch("tasks", 10)
    assert wait is None
    assert sorted((m.group, m.payload["i"]) for m in got) == [("t1", 0), ("t2", 0)]
    more, _ = b.dequeue_batch("tasks", 10)
    assert more == [], "each group's head is held by the other language"
    a.archive("tasks", got[0])
    more, _ = b.dequeue_batch("tasks", 10)
    assert [(m.group, m.payload["i"]) for m in more] == [(got[0].group, 1)]
    assert db.leased() == 2
    archived = db.rows("SELECT group_key FROM {s}.archive")
    assert archived == [(got[0].group,)]
    # A rate limit: the other language's dequeue finds no token, and says when.
    admin.update_queue("tasks", concurrency_limit=None, group_concurrency=None, rate_limit="2/m")
    got, _ = a.dequeue_batch("tasks", 10)
    assert len(got) == 2
    none, wait = b.dequeue_batch("tasks", 10)
    assert none == [] and wait is not None and 20 < wait <= 30


# -- producers and consumers ----------------------------------------------------------


@pytest.mark.parametrize(("producer", "consumer"), PAIRS)
def test_round_trip_with_priority_headers_and_result(
    drivers: dict[str, Driver], admin: pgqrs.Admin, producer: str, consumer: str
) -> None:
    p, c = drivers[producer], drivers[consumer]
    sent = p.enqueue("tasks", {"job": 1}, priority=5, headers={"trace": producer})
    later = p.enqueue("tasks", {"job": 0})
    got = c.dequeue("tasks")
    assert got is not None and got.lease is not None
    assert (got.id, got.payload, got.priority, got.headers, got.attempts) == (
        sent.id,
        {"job": 1},
        5,
        {"trace": producer},
        1,
    )
    second = c.dequeue("tasks")
    assert second is not None and second.id == later.id
    assert c.dequeue("tasks") is None, "both leased: invisible to the next dequeue"
    c.archive("tasks", got, result={"sent": True})
    c.archive("tasks", second)
    done = {a.id: a for a in admin.list_archive("tasks", status="completed")}
    assert (done[sent.id].result, done[sent.id].attempts) == ({"sent": True}, 1)
    assert set(done) == {sent.id, later.id}


@pytest.mark.parametrize(("producer", "consumer"), PAIRS)
def test_cancel_and_wait(
    drivers: dict[str, Driver], db: Db, producer: str, consumer: str
) -> None:
    """Issue 16: the producer's language cancels and waits, the consumer's
    settles: a waiting message is archived cancelled at once, a leased one
    when its holder settles it (whatever status it asked for); cancelling it
    again is AlreadyArchived; waiting times out with WaitTimeout."""
    p, c = drivers[producer], drivers[consumer]
    waiting = p.enqueue("tasks", {"n": 1}, delay=3600)
    held = p.enqueue("tasks", {"n": 2})
    assert p.cancel(waiting.id) == "cancelled"
    assert p.wait(waiting.id, 30)["status"] == "cancelled"
    got = c.dequeue("tasks")
    assert got is not None and got.id == held.id
    with pytest.raises(DriverError) as timeout:
        p.wait(held.id, 0.2)
    assert timeout.value.kind == "WaitTimeout"
    assert p.cancel(held.id) == "cancel_requested"
    c.archive("tasks", got, result={"ignored": True})
    done = p.wait(held.id, 30)
    assert (done["status"], done["result"]) == ("cancelled", None)
    with pytest.raises(DriverError) as again:
        c.cancel(held.id)
    assert again.value.kind == "AlreadyArchived" and "cancelled" in str(again.value)
    with pytest.raises(DriverError) as unknown:
        c.cancel(999_999)
    assert unknown.value.kind == "MessageNotFound"


@pytest.mark.parametrize(("producer", "consumer"), PAIRS)
def test_delivery_order_is_priority_then_id(
    drivers: dict[str, Driver], producer: str, consumer: str
) -> None:
    p, c = drivers[producer], drivers[consumer]
    sent = {
        name: p.enqueue("tasks", {"name": name}, priority=prio).id
        for name, prio in [("a", 0), ("b", 5), ("c", 1), ("d", 5), ("e", 0), ("f", -3)]
    }
    order = []
    while (m := c.dequeue("tasks")) is not None:
        assert m.id == sent[m.payload["name"]]
        order.append(m.payload["name"])
    assert order == ["b", "d", "c", "a", "e", "f"]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_dedup_key_is_shared_until_archived(
    drivers: dict[str, Driver], first: str, second: str
) -> None:
    a, b = drivers[first], drivers[second]
    orig = a.enqueue("tasks", {"from": first}, dedup_key="invoice-1")
    assert orig.inserted and orig.dedup_key == "invoice-1"
    dup = b.enqueue("tasks", {"from": second}, dedup_key="invoice-1")
    assert (dup.id, dup.inserted, dup.payload) == (orig.id, False, {"from": first})
    batch = b.enqueue_batch("tasks", [1, 2, 3], dedup_keys=["invoice-1", "invoice-3", None])
    inserted = [(m.id == orig.id, m.inserted) for m in batch]
    assert inserted == [(True, False), (False, True), (False, True)]
    # Once archived, the key is free again.
    while (m := a.dequeue("tasks")) is not None:
        a.archive("tasks", m)
    fresh = b.enqueue("tasks", {"from": second}, dedup_key="invoice-1")
    assert fresh.inserted and fresh.id != orig.id


@pytest.mark.parametrize(("producer", "consumer"), MIXED)
def test_delayed_message_waits_until_due(
    drivers: dict[str, Driver], admin: pgqrs.Admin, db: Db, producer: str, consumer: str
) -> None:
    p, c = drivers[producer], drivers[consumer]
    sent = p.enqueue("tasks", {"later": True}, delay=2)
    due_in = db.value(
        "SELECT extract(epoch FROM visible_at - enqueued_at) FROM {s}.messages WHERE id = %s",
        sent.id,
    )
    assert 1.9 < float(due_in) <= 2.1
    assert c.dequeue("tasks") is None
    assert admin.queue_stats("tasks").delayed == 1
    got = eventually("the delayed message to be due", lambda: c.dequeue("tasks"))
    assert (got.id, got.attempts) == (sent.id, 1)
    early = "SELECT now() < enqueued_at + interval '2 s' FROM {s}.messages WHERE id = %s"
    assert db.value(early, sent.id) is False, "not handed out before it was due"


@pytest.mark.parametrize(("stale", "taker"), PAIRS)
def test_expired_lease_redelivers_and_fences_the_stale_holder(
    drivers: dict[str, Driver], admin: pgqrs.Admin, db: Db, stale: str, taker: str
) -> None:
    s, t = drivers[stale], drivers[taker]
    sent = s.enqueue("tasks", {"n": 1})
    old = s.dequeue("tasks", vt=0.3)
    assert old is not None
    new = eventually("the lease to expire", lambda: t.dequeue("tasks", vt=30))
    assert (new.id, new.attempts) == (sent.id, 2) and new.lease != old.lease
    for action in (s.archive, s.delete, s.release):
        with pytest.raises(DriverError) as exc:
            action("tasks", old)
        assert (exc.value.kind, exc.value.ids) == ("LeaseExpired", [sent.id])
    assert admin.queue_stats("tasks").in_flight == 1, "the row was left to its new holder"
    t.archive("tasks", new)
    assert db.archived() == 1


@pytest.mark.parametrize(("first", "second"), MIXED)
def test_dead_after_max_attempts(
    drivers: dict[str, Driver], admin: pgqrs.Admin, first: str, second: str
) -> None:
    a, b = drivers[first], drivers[second]
    admin.create_queue("flaky", max_attempts=2)
    sent = a.enqueue("flaky", {"n": 1})
    m1 = a.dequeue("flaky")
    assert m1 is not None and m1.attempts == 1
    a.release("flaky", m1)
    m2 = b.dequeue("flaky")
    assert m2 is not None and (m2.id, m2.attempts) == (sent.id, 2)
    b.release("flaky", m2)
    assert b.dequeue("flaky") is None
    assert a.dequeue("flaky") is None
    assert [d.id for d in admin.list_archive("flaky", status="dead")] == [sent.id]


# -- workers (each language's worker on the other language's messages) --------------------


@pytest.mark.parametrize("lang", LANGS)
def test_worker_stores_results_and_gives_up_on_abort(
    drivers: dict[str, Driver], admin: pgqrs.Admin, db: Db, lang: str
) -> None:
    payloads = [{"result": {"n": i, "text": "é✓"}} for i in range(5)]
    sent = drivers[other(lang)].enqueue_batch("tasks", [*payloads, {"abort": "asked to fail"}])
    w = drivers[lang].start_worker("tasks", **QUICK)
    eventually("6 settled", lambda: db.archived() == 5 and db.archived("dead") == 1)
    w.stop()
    counters = w.wait()
    assert (counters.completed, counters.dead, counters.retried) == (5, 1, 0)
    done = {a.id: a for a in admin.list_archive("tasks", limit=10)}
    for m in sent[:5]:
        assert (done[m.id].status, done[m.id].result) == ("completed", m.payload["result"])
    gave_up = done[sent[5].id]
    assert (gave_up.status, gave_up.attempts) == ("dead", 1)
    assert gave_up.error is not None
    assert (gave_up.error["type"], gave_up.error["message"], gave_up.error["attempt"]) == (
        "pgqrs.Abort",
        "asked to fail",
        1,
    )
    assert [w.status for w in admin.list_workers()] == ["stopped"]


@pytest.mark.parametrize("lang", LANGS)
def test_worker_retries_then_completes(
    drivers: dict[str, Driver], admin: pgqrs.Admin, db: Db, lang: str
) -> None:
    sent = drivers[other(lang)].enqueue("tasks", {"fail": 2, "report": True})
    w = drivers[lang].start_worker("tasks", **QUICK)
    eventually("completion", lambda: db.archived() == 1)
    w.stop()
    counters = w.wait()
    assert (counters.completed, counters.retried, counters.dead) == (1, 2, 0)
    [done] = admin.list_archive("tasks")
    assert (done.id, done.attempts) == (sent.id, 3)
    # What the third attempt saw: its number, and the second's error.
    assert done.result["attempts"] == 3
    last = done.result["last_error"]
    assert (last["type"], last["message"], last["attempt"]) == (
        "pgqrs.Retry",
        "attempt 2 failed",
        2,
    )
    assert isinstance(last["worker_id"], int)


@pytest.mark.parametrize("lang", LANGS)
def test_failed_attempt_waits_its_backoff(drivers: dict[str, Driver], db: Db, lang: str) -> None:
    drivers[other(lang)].enqueue("tasks", {"fail": 1})
    options = {**QUICK, "backoff": {"base": 30, "max": 60, "jitter": 0}}
    w = drivers[lang].start_worker("tasks", **options)
    back = eventually(
        "the failed message back in the queue",
        lambda: db.rows(
            "SELECT attempts, last_error, lease IS NULL, extract(epoch FROM visible_at - now()) "
            "FROM {s}.messages WHERE last_error IS NOT NULL"
        ),
    )
    w.stop()
    counters = w.wait()
    [(attempts, last_error, unleased, due_in)] = back
    assert (attempts, last_error["message"], unleased) == (1, "attempt 1 failed", True)
    assert 25 < float(due_in) <= 30, "due after the first backoff step (base 30 s, no jitter)"
    assert (counters.retried, counters.completed) == (1, 0)


@pytest.mark.parametrize("lang", LANGS)
def test_worker_dead_after_max_attempts_with_the_error(
    drivers: dict[str, Driver], admin: pgqrs.Admin, db: Db, lang: str
) -> None:
    admin.create_queue("flaky", max_attempts=3)
    sent = drivers[other(lang)].enqueue("flaky", {"fail": 99})
    gave_up = drivers[other(lang)].enqueue("flaky", {"abort": "not worth it"})
    w = drivers[lang].start_worker("flaky", **QUICK)
    eventually("two dead messages", lambda: db.archived("dead") == 2)
    w.stop()
    counters = w.wait()
    assert (counters.retried, counters.dead, counters.completed) == (2, 2, 0)
    dead = {a.id: a for a in admin.list_archive("flaky", status="dead")}
    failed = dead[sent.id]
    assert failed.attempts == 3 and failed.error is not None
    assert (failed.error["type"], failed.error["message"], failed.error["attempt"]) == (
        "pgqrs.Retry",
        "attempt 3 failed",
        3,
    )
    assert isinstance(failed.error["worker_id"], int)
    assert dead[gave_up.id].attempts == 1
    assert dead[gave_up.id].error["message"] == "not worth it"


@pytest.mark.parametrize("lang", LANGS)
def test_worker_extends_the_lease_of_a_long_handler(
    drivers: dict[str, Driver],
    config: pgqrs.Config,
    admin: pgqrs.Admin,
    db: Db,
    tmp_path: Path,
    lang: str,
) -> None:
    admin.create_queue("slow", visibility_timeout=1)
    gate = tmp_path / "gate"
    drivers[other(lang)].enqueue("slow", {"gate": str(gate)})
    w = drivers[lang].start_worker("slow", **QUICK)
    eventually("the worker to lease the message", lambda: db.leased() == 1)
    held_3_timeouts = "SELECT now() - dequeued_at > interval '3 s' FROM {s}.messages"
    with pgqrs.Consumer(config, "slow") as rival:

        def kept() -> bool:
            assert rival.dequeue() is None, "the lease was kept"
            return bool(db.value(held_3_timeouts))

        # Nobody else gets the message while its handler runs, three
        # visibility timeouts (by the database's clock) and more.
        eventually("the handler to hold its message for 3 visibility timeouts", kept)
    gate.touch()
    eventually("completion", lambda: db.archived() == 1)
    w.stop()
    w.wait()
    [done] = admin.list_archive("slow")
    assert (done.status, done.attempts) == ("completed", 1), "delivered once"


@pytest.mark.parametrize("lang", LANGS)
def test_graceful_stop_gives_back_prefetched_messages_refunded(
    drivers: dict[str, Driver], db: Db, tmp_path: Path, lang: str
) -> None:
    gate = tmp_path / "gate"
    drivers[other(lang)].enqueue_batch("tasks", [{"gate": str(gate)}] * 2 + [{}] * 8)
    options = {**QUICK, "concurrency": 2, "prefetch": 3, "grace_period": 15}
    w = drivers[lang].start_worker("tasks", **options)
    eventually("2 running and 3 prefetched", lambda: db.leased() == 5)
    w.stop()
    # The waiting ones go back at once; the running ones get the grace period.
    eventually("the prefetched ones given back", lambda: db.leased() == 2)
    refunded = "SELECT count(*) FROM {s}.messages WHERE lease IS NULL AND attempts = 0"
    assert db.value(refunded) == 8, "5 never fetched, 3 given back with the attempt refunded"
    gate.touch()  # the running handlers finish within the grace period
    counters = w.wait()
    assert counters.completed == 2 and db.archived() == 2
    assert db.value(refunded) == 8 and db.leased() == 0


@pytest.mark.parametrize("lang", LANGS)
def test_pruned_worker_registers_again(drivers: dict[str, Driver], db: Db, lang: str) -> None:
    """Its row deleted (pruned while it could not reach the database): the next
    heartbeat (worker_alive, in SQL) registers the worker again under the same
    id, and it goes on working."""
    w = drivers[lang].start_worker("tasks", **QUICK, heartbeat_interval=0.1)
    old = eventually("the worker to register", db.running_worker)
    db.sql.execute(f'DELETE FROM "{db.schema}".workers WHERE id = %s', (old,))
    again = eventually("the worker to register again", db.running_worker)
    assert again == old
    row = db.rows("SELECT pid, queues, listening, status FROM {s}.workers WHERE id = %s", again)
    assert row == [(w.pid, ["tasks"], True, "running")]
    drivers[other(lang)].enqueue("tasks", {"result": 1})
    eventually("a completion after re-registering", lambda: db.archived() == 1)
    w.stop()
    w.wait()
    assert db.rows("SELECT status FROM {s}.workers") == [("stopped",)]


@pytest.mark.parametrize("lang", LANGS)
def test_pause_stops_consumption_and_resume_restarts_it(
    drivers: dict[str, Driver], admin: pgqrs.Admin, db: Db, lang: str
) -> None:
    admin.pause_queue("tasks")
    w = drivers[lang].start_worker("tasks", **QUICK, heartbeat_interval=0.2)
    worker_id = eventually("the worker to register", db.running_worker)
    drivers[other(lang)].enqueue_batch("tasks", [{"n": 1}, {"n": 2}])
    since = db.value("SELECT now()")
    # Two heartbeats later (by the database's clock) the worker has polled
    # the paused queue, and been woken by the enqueue's NOTIFY, several times.
    eventually(
        "two heartbeats after the enqueue",
        lambda: db.value(
            "SELECT heartbeat_at > %s::timestamptz + interval '0.4 s' FROM {s}.workers "
            "WHERE id = %s",
            since,
            worker_id,
        ),
    )
    assert db.archived() == 0 and db.leased() == 0
    assert admin.queue_stats("tasks").ready == 2
    admin.resume_queue("tasks")
    eventually("completions after resume", lambda: db.archived() == 2)
    w.stop()
    assert w.wait().completed == 2
