"""Enqueue, dequeue and the fenced settlement of messages (sync API)."""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest

import pgqrs

T = TypeVar("T")


def eventually(fn: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Call fn until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


@pytest.fixture
def producer(config: pgqrs.Config, queue: str) -> Iterator[pgqrs.Producer]:
    with pgqrs.Producer(config, queue) as p:
        yield p


@pytest.fixture
def consumer(config: pgqrs.Config, queue: str) -> Iterator[pgqrs.Consumer]:
    with pgqrs.Consumer(config, queue) as c:
        yield c


def row(sql: psycopg.Connection, schema: str, table: str, msg_id: int) -> dict[str, Any] | None:
    cur = sql.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute(f'SELECT * FROM "{schema}".{table} WHERE id = %s', [msg_id]).fetchone()


# -- payloads ---------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, stored",
    [
        ({"a": [1, 2, {"b": None}]}, {"a": [1, 2, {"b": None}]}),
        ([1, "two", 3.5], [1, "two", 3.5]),
        (42, 42),
        (True, True),
        (None, None),
        ('{"already": "json"}', {"already": "json"}),
        ('"a plain string, as JSON"', "a plain string, as JSON"),
        ({"big": 12345678901234567890123}, {"big": 12345678901234567890123}),
        ({"ünï": "cødé ✓ 🎉"}, {"ünï": "cødé ✓ 🎉"}),
        ({"pair": "\U0001f600"}, {"pair": "\U0001f600"}),
    ],
)
def test_payload_round_trip(
    producer: pgqrs.Producer, consumer: pgqrs.Consumer, payload: Any, stored: Any
) -> None:
    sent = producer.enqueue(payload)
    assert sent.payload == stored and sent.inserted
    got = consumer.dequeue()
    assert got is not None and got.id == sent.id and got.payload == stored


@pytest.mark.parametrize(
    "payload, match",
    [
        ("not json", r"json.dumps\('not json'\)"),
        ("{'single': 1}", "not JSON text"),
        (b"{}", "bytes"),
        ({"nul": "a\x00b"}, "NUL"),
        ('{"nul": "a\\u0000b"}', "NUL"),
        ({"lone": "\ud800"}, "surrogate"),
        ('{"lone": "\\ud800"}', "surrogate"),
        ({"when": datetime.datetime.now()}, "cannot be encoded as JSON"),
        ({"nan": float("nan")}, "NaN"),
        ({"x": "y" * (1024 * 1024)}, "over the limit"),
    ],
)
def test_bad_payloads_are_refused_before_any_round_trip(
    producer: pgqrs.Producer, admin: pgqrs.Admin, payload: Any, match: str
) -> None:
    with pytest.raises(pgqrs.PayloadError, match=match):
        producer.enqueue(payload)
    assert admin.queue_stats("tasks").ready == 0


def test_escaped_backslash_before_u0000_is_fine(producer: pgqrs.Producer) -> None:
    text = json.dumps({"path": "C:\\u0000dir"})  # a backslash, then the letters u0000
    assert producer.enqueue(text).payload == {"path": "C:\\u0000dir"}


def test_payload_limit_is_configurable(
    dsn: str, schema: str, admin: pgqrs.Admin, queue: str
) -> None:
    cfg = pgqrs.Config.from_dsn(dsn, schema=schema, max_payload_bytes=10)
    with pgqrs.Producer(cfg, queue) as p:
        p.enqueue([1, 2])
        with pytest.raises(pgqrs.PayloadError, match="limit of 10 bytes"):
            p.enqueue({"too": "long!"})


def test_deeply_nested_payload(producer: pgqrs.Producer) -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(pgqrs.PayloadError, match="nested"):
        producer.enqueue(deep)


# -- enqueue options --------------------------------------------------------


def test_headers_and_message_fields(producer: pgqrs.Producer, consumer: pgqrs.Consumer) -> None:
    sent = producer.enqueue({"x": 1}, headers={"trace": "abc", "n": 2})
    assert (
        sent.headers == {"trace": "abc", "n": 2} and sent.attempts == 0 and sent.dequeued_at is None
    )
    got = consumer.dequeue()
    assert got is not None
    assert got.headers == {"trace": "abc", "n": 2}
    assert got.attempts == 1 and got.queue == "tasks" and got.priority == 0
    assert got.dequeued_at is not None and got.enqueued_at <= got.dequeued_at < got.visible_until
    with pytest.raises(pgqrs.PayloadError, match="headers"):
        producer.enqueue({}, headers={1: "x"})  # type: ignore[dict-item]


def test_priority_orders_delivery_then_fifo(
    producer: pgqrs.Producer, consumer: pgqrs.Consumer
) -> None:
    producer.enqueue("1", priority=0)
    producer.enqueue("2", priority=10)
    producer.enqueue("3", priority=-5)
    producer.enqueue("4", priority=10)
    producer.enqueue("5", priority=0)
    got = consumer.dequeue(batch=10)
    assert [m.payload for m in got] == [2, 4, 1, 5, 3]


def test_delay_and_available_at_keep_messages_invisible(
    producer: pgqrs.Producer, consumer: pgqrs.Consumer, admin: pgqrs.Admin
) -> None:
    producer.enqueue("1", delay=1.5)
    producer.enqueue("2", delay=datetime.timedelta(hours=1))
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
    producer.enqueue("3", available_at=future)
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    now_msg = producer.enqueue("4", available_at=past)
    assert now_msg.visible_until >= now_msg.enqueued_at  # never in the past
    first = consumer.dequeue()
    assert first is not None and first.payload == 4
    assert consumer.dequeue() is None  # 1 is not due yet
    assert admin.queue_stats("tasks").delayed == 3
    due = eventually(consumer.dequeue)
    assert due.payload == 1
    assert consumer.dequeue() is None
    with pytest.raises(pgqrs.InvalidArgument, match="timezone-aware"):
        producer.enqueue("x", available_at=datetime.datetime(2030, 1, 1))
    with pytest.raises(pgqrs.InvalidArgument, match="delay"):
        producer.enqueue("x", delay=-1)


def test_enqueue_batch_is_one_statement_in_input_order(
    producer: pgqrs.Producer, consumer: pgqrs.Consumer
) -> None:
    msgs = producer.enqueue_batch([{"n": i} for i in range(500)], priority=3, headers={"h": 1})
    assert [m.payload["n"] for m in msgs] == list(range(500))
    assert [m.id for m in msgs] == sorted(m.id for m in msgs)
    got = consumer.dequeue(batch=500)
    assert [m.id for m in got] == [m.id for m in msgs]
    with pytest.raises(pgqrs.InvalidArgument, match="empty"):
        producer.enqueue_batch([])


def test_dedup_key_returns_the_waiting_message(
    producer: pgqrs.Producer, consumer: pgqrs.Consumer
) -> None:
    first = producer.enqueue({"v": 1}, dedup_key="user-7")
    again = producer.enqueue({"v": 2}, dedup_key="user-7")
    assert first.inserted and not again.inserted
    assert again.id == first.id and again.payload == {"v": 1}
    # Still deduplicated while in flight...
    got = consumer.dequeue()
    assert got is not None and got.id == first.id
    assert producer.enqueue({"v": 3}, dedup_key="user-7").id == first.id
    # ...and free again once archived.
    consumer.archive(got)
    fresh = producer.enqueue({"v": 4}, dedup_key="user-7")
    assert fresh.inserted and fresh.id != first.id


def test_dedup_keys_in_a_batch(producer: pgqrs.Producer) -> None:
    existing = producer.enqueue("0", dedup_key="k1")
    msgs = producer.enqueue_batch(["1", "2", "3", "4"], dedup_keys=["k1", None, "k2", None])
    assert [m.inserted for m in msgs] == [False, True, True, True]
    assert msgs[0].id == existing.id
    assert [m.payload for m in msgs] == [0, 2, 3, 4]
    with pytest.raises(pgqrs.InvalidArgument, match="twice"):
        producer.enqueue_batch(["1", "2"], dedup_keys=["same", "same"])
    with pytest.raises(pgqrs.InvalidArgument, match="dedup_keys has 1"):
        producer.enqueue_batch(["1", "2"], dedup_keys=["a"])


def test_concurrent_enqueues_with_one_dedup_key_give_one_message(
    config: pgqrs.Config, queue: str, sql: psycopg.Connection
) -> None:
    barrier = threading.Barrier(20)
    ids: list[int] = []
    errors: list[BaseException] = []

    def enqueue(n: int) -> None:
        try:
            with pgqrs.Producer(config, queue) as p:
                p.open()
                barrier.wait()
                ids.append(p.enqueue({"n": n}, dedup_key="once").id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=enqueue, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(ids) == 20 and len(set(ids)) == 1
    count = sql.execute(f'SELECT count(*) FROM "{config.schema}".messages').fetchone()
    assert count == (1,)


def test_transactional_enqueue_commits_and_rolls_back_with_the_caller(
    dsn: str, producer: pgqrs.Producer, consumer: pgqrs.Consumer
) -> None:
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            producer.enqueue({"keep": True}, connection=conn)
            # Not visible to anyone before the caller commits.
            assert consumer.dequeue() is None
        with pytest.raises(ZeroDivisionError), conn.transaction():
            producer.enqueue({"keep": False}, connection=conn)
            producer.enqueue_batch([1, 2, 3], connection=conn)
            raise ZeroDivisionError
    got = consumer.dequeue(batch=10)
    assert [m.payload for m in got] == [{"keep": True}]


# -- dequeue, leases and fencing ----------------------------------------------


def test_dequeue_empty_and_batch_shapes(consumer: pgqrs.Consumer, producer: pgqrs.Producer) -> None:
    assert consumer.dequeue() is None
    assert consumer.dequeue(batch=3) == []
    producer.enqueue_batch([1, 2])
    assert [m.payload for m in consumer.dequeue(batch=3)] == [1, 2]
    with pytest.raises(pgqrs.InvalidArgument, match="batch"):
        consumer.dequeue(batch=0)


def test_leased_message_is_invisible_until_the_lease_expires(
    config: pgqrs.Config, producer: pgqrs.Producer
) -> None:
    sent = producer.enqueue({"job": 1})
    with pgqrs.Consumer(config, "tasks") as a, pgqrs.Consumer(config, "tasks") as b:
        first = a.dequeue(visibility_timeout=0.5)
        assert first is not None and first.id == sent.id
        assert b.dequeue() is None  # exactly once within the visibility timeout
        second = eventually(b.dequeue)
        assert second.id == sent.id and second.attempts == 2 and second.lease != first.lease


def test_stale_holder_cannot_archive_delete_extend_or_release(
    config: pgqrs.Config, producer: pgqrs.Producer, sql: psycopg.Connection
) -> None:
    producer.enqueue({"job": 1})
    with pgqrs.Consumer(config, "tasks") as stale, pgqrs.Consumer(config, "tasks") as fresh:
        old = stale.dequeue(visibility_timeout=0.2)
        assert old is not None
        new = eventually(lambda: fresh.dequeue(visibility_timeout=60))
        before = row(sql, config.schema, "messages", old.id)
        for action in (
            lambda: stale.archive(old.id, "completed"),
            lambda: stale.archive(old),
            lambda: stale.delete(old),
            lambda: stale.extend(old, 30),
            lambda: stale.release(old),
        ):
            with pytest.raises(pgqrs.LeaseExpired, match="redelivered") as info:
                action()
            assert info.value.ids == [old.id]
            assert row(sql, config.schema, "messages", old.id) == before  # untouched
        # The current holder's work stands.
        fresh.archive(new.id, "completed", result={"ok": True})
        archived = row(sql, config.schema, "archive", new.id)
        assert archived is not None and archived["result"] == {"ok": True}
        # And after that, the stale holder still cannot touch it.
        with pytest.raises(pgqrs.LeaseExpired):
            stale.archive(old)


def test_expired_but_not_taken_lease_still_completes(
    consumer: pgqrs.Consumer, producer: pgqrs.Producer, admin: pgqrs.Admin
) -> None:
    producer.enqueue({"x": 1})
    m = consumer.dequeue(visibility_timeout=0.1)
    assert m is not None
    eventually(lambda: admin.queue_stats("tasks").ready == 1)
    consumer.archive(m)  # nobody took it over: no double delivery is possible
    assert admin.queue_stats("tasks").archived == {"completed": 1}


def test_archive_by_id_needs_a_lease_this_consumer_holds(
    config: pgqrs.Config, producer: pgqrs.Producer
) -> None:
    sent = producer.enqueue({"x": 1})
    with pgqrs.Consumer(config, "tasks") as a, pgqrs.Consumer(config, "tasks") as b:
        got = a.dequeue()
        assert got is not None
        with pytest.raises(pgqrs.LeaseNotHeld, match="pass the Message"):
            b.archive(sent.id)
        with pytest.raises(pgqrs.LeaseNotHeld):
            a.archive(sent)  # the enqueued Message carries no lease
        b.archive(got)  # the dequeued Message does: any Consumer can settle it
        with pytest.raises(pgqrs.InvalidArgument):
            a.archive("7")  # type: ignore[arg-type]


def test_archive_with_status_result_and_batch(
    consumer: pgqrs.Consumer,
    producer: pgqrs.Producer,
    config: pgqrs.Config,
    sql: psycopg.Connection,
    admin: pgqrs.Admin,
) -> None:
    producer.enqueue_batch(
        [{"n": i} for i in range(6)], headers={"h": "v"}, dedup_keys=[f"k{i}" for i in range(6)]
    )
    got = consumer.dequeue(batch=6)
    consumer.archive(got[0].id, "failed", result={"why": "bad input"})
    assert consumer.archive_batch(got[1:3], results=[1, 2]) == [got[1].id, got[2].id]
    a = row(sql, config.schema, "archive", got[0].id)
    assert a is not None
    assert (
        a["status"],
        a["result"],
        a["payload"],
        a["headers"],
        a["attempts"],
        a["dedup_key"],
    ) == ("failed", {"why": "bad input"}, {"n": 0}, {"h": "v"}, 1, "k0")
    assert a["archived_at"] >= a["dequeued_at"] >= a["enqueued_at"]
    assert admin.queue_stats("tasks").archived == {"failed": 1, "completed": 2}
    with pytest.raises(pgqrs.InvalidArgument, match="status"):
        consumer.archive(got[3], "Robert'); DROP TABLE x;--")
    with pytest.raises(pgqrs.InvalidArgument, match="twice"):
        consumer.archive_batch([got[3], got[3]])


def test_batch_archive_with_some_leases_lost_archives_the_rest(
    config: pgqrs.Config, producer: pgqrs.Producer
) -> None:
    producer.enqueue_batch([1, 2, 3])
    with pgqrs.Consumer(config, "tasks") as a, pgqrs.Consumer(config, "tasks") as b:
        mine = a.dequeue(batch=3, visibility_timeout=0.2)
        keep = a.extend_batch(mine[:2], 60)
        assert len(keep) == 2
        taken = eventually(lambda: b.dequeue(visibility_timeout=60))
        assert taken.id == mine[2].id
        with pytest.raises(pgqrs.LeaseExpired) as info:
            a.archive_batch(mine)
        assert info.value.ids == [mine[2].id]
        assert sorted(info.value.succeeded) == [mine[0].id, mine[1].id]


def test_extend_keeps_the_lease(
    consumer: pgqrs.Consumer, producer: pgqrs.Producer, config: pgqrs.Config
) -> None:
    producer.enqueue({"x": 1})
    m = consumer.dequeue(visibility_timeout=0.3)
    assert m is not None
    before = m.visible_until
    until = consumer.extend(m, 60)
    assert until == m.visible_until and until > before
    with pgqrs.Consumer(config, "tasks") as other:
        time.sleep(0.4)  # past the original lease: the extension must hold it
        assert other.dequeue() is None
    consumer.extend(m.id, 30)  # by id: the consumer remembers the lease
    consumer.archive(m.id)
    with pytest.raises(pgqrs.InvalidArgument):
        consumer.extend(m, 0)


def test_release_with_delay_and_error(
    consumer: pgqrs.Consumer, producer: pgqrs.Producer, admin: pgqrs.Admin
) -> None:
    producer.enqueue({"x": 1})
    m = consumer.dequeue()
    assert m is not None
    consumer.release(m, delay=0.3, error={"type": "Boom"})
    assert consumer.dequeue() is None
    assert admin.queue_stats("tasks").delayed == 1
    again = eventually(consumer.dequeue)
    assert again.id == m.id and again.attempts == 2 and again.last_error == {"type": "Boom"}
    consumer.release(again)  # no delay: ready at once
    assert consumer.dequeue() is not None


def test_delete_removes_without_archive(
    consumer: pgqrs.Consumer, producer: pgqrs.Producer, admin: pgqrs.Admin
) -> None:
    producer.enqueue_batch([1, 2, 3])
    got = consumer.dequeue(batch=3)
    consumer.delete(got[0])
    assert consumer.delete_batch(got[1:]) == [got[1].id, got[2].id]
    stats = admin.queue_stats("tasks")
    assert (stats.ready, stats.in_flight, stats.archived) == (0, 0, {})


def test_max_attempts_moves_the_message_to_dead(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection
) -> None:
    admin.create_queue("flaky", max_attempts=2)
    with pgqrs.Producer(config, "flaky") as p, pgqrs.Consumer(config, "flaky") as c:
        sent = p.enqueue({"x": 1})
        for attempt in (1, 2):
            m = c.dequeue()
            assert m is not None and m.attempts == attempt
            c.release(m, error={"attempt": attempt})
        # Delivered twice without being archived: the next dequeue buries it.
        assert c.dequeue() is None
        dead = row(sql, config.schema, "archive", sent.id)
        assert dead is not None and dead["status"] == "dead" and dead["attempts"] == 2
        assert dead["error"]["last_error"] == {"attempt": 2}
        assert admin.queue_stats("flaky").archived == {"dead": 1}
        # A dead message can be put back (redrive) with fresh attempts.
        assert admin.redrive("flaky") == [sent.id]
        back = c.dequeue()
        assert back is not None and back.id == sent.id and back.attempts == 1


def test_dead_messages_do_not_hide_live_ones(admin: pgqrs.Admin, config: pgqrs.Config) -> None:
    admin.create_queue("q", max_attempts=1)
    with pgqrs.Producer(config, "q") as p, pgqrs.Consumer(config, "q") as c:
        p.enqueue_batch(["1", "2"], priority=5)
        for m in c.dequeue(batch=2):
            c.release(m)
        p.enqueue("3")
        got = c.dequeue()  # the two exhausted ones go to dead; 3 is delivered
        assert got is not None and got.payload == 3
        assert admin.queue_stats("q").archived == {"dead": 2}


def test_archive_listing_purging_and_peek(
    admin: pgqrs.Admin, consumer: pgqrs.Consumer, producer: pgqrs.Producer
) -> None:
    producer.enqueue_batch([1, 2, 3])
    producer.enqueue(4, delay=3600)
    got = consumer.dequeue(batch=2)
    peeked = admin.peek("tasks", 10)
    assert [(m.payload, state) for m, state in peeked] == [
        (1, "in_flight"),
        (2, "in_flight"),
        (3, "ready"),
        (4, "delayed"),
    ]
    consumer.archive(got[0])
    consumer.archive(got[1], "failed")
    listed = admin.list_archive("tasks")
    assert [a.id for a in listed] == [got[1].id, got[0].id]
    assert [a.id for a in admin.list_archive(status="failed")] == [got[1].id]
    assert admin.purge_archive(older_than=3600) == 0
    assert admin.purge_archive(older_than=0, status="failed") == 1
    assert [a.status for a in admin.list_archive("tasks")] == ["completed"]
