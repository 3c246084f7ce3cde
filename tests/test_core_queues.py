"""Queue management through Admin."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

import pgqrs


def test_create_get_list_delete(admin: pgqrs.Admin) -> None:
    info = admin.create_queue("emails", visibility_timeout=12.5, max_attempts=3)
    assert (info.name, info.visibility_timeout, info.max_attempts, info.paused) == (
        "emails",
        12.5,
        3,
        False,
    )
    admin.create_queue("a.b:c-d_e")
    assert [q.name for q in admin.list_queues()] == ["a.b:c-d_e", "emails"]
    assert admin.get_queue("emails") == info
    admin.delete_queue("emails")
    assert [q.name for q in admin.list_queues()] == ["a.b:c-d_e"]
    with pytest.raises(pgqrs.QueueNotFound, match="'emails'"):
        admin.delete_queue("emails")


def test_create_existing(admin: pgqrs.Admin) -> None:
    first = admin.create_queue("q", visibility_timeout=5)
    with pytest.raises(pgqrs.QueueExists, match="exist_ok=True"):
        admin.create_queue("q")
    assert admin.create_queue("q", exist_ok=True, visibility_timeout=99) == first


@pytest.mark.parametrize(
    "name",
    [
        "",
        "has space",
        "semi;colon",
        "quote'",
        'dq"',
        "pct%",
        "x" * 129,
        "ünïcode",
        "nul\x00",
        "a/b",
        5,
        None,
    ],
)
def test_invalid_queue_names_are_refused_before_any_sql(
    admin: pgqrs.Admin, config: pgqrs.Config, name: object
) -> None:
    with pytest.raises(pgqrs.InvalidQueueName):
        admin.create_queue(name)  # type: ignore[arg-type]
    with pytest.raises(pgqrs.InvalidQueueName):
        pgqrs.Producer(config, name)  # type: ignore[arg-type]
    with pytest.raises(pgqrs.InvalidQueueName):
        pgqrs.Consumer(config, name)  # type: ignore[arg-type]
    assert admin.list_queues() == []


def test_queue_name_rule_is_also_a_database_constraint(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        sql.execute(f"INSERT INTO \"{config.schema}\".queues (name) VALUES ('bad name')")


def test_invalid_options(admin: pgqrs.Admin) -> None:
    with pytest.raises(pgqrs.InvalidArgument, match="visibility_timeout"):
        admin.create_queue("q", visibility_timeout=0)
    with pytest.raises(pgqrs.InvalidArgument, match="max_attempts"):
        admin.create_queue("q", max_attempts=0)


def test_unknown_queue_everywhere(admin: pgqrs.Admin, config: pgqrs.Config) -> None:
    for call in (
        admin.purge_queue,
        admin.queue_stats,
        admin.pause_queue,
        admin.resume_queue,
        admin.get_queue,
    ):
        with pytest.raises(pgqrs.QueueNotFound, match="create_queue"):
            call("nope")
    with pgqrs.Producer(config, "nope") as p, pytest.raises(pgqrs.QueueNotFound):
        p.enqueue({"x": 1})
    with pgqrs.Consumer(config, "nope") as c, pytest.raises(pgqrs.QueueNotFound):
        c.dequeue()


def test_purge_and_stats(admin: pgqrs.Admin, config: pgqrs.Config) -> None:
    admin.create_queue("q", visibility_timeout=60)
    with pgqrs.Producer(config, "q") as p, pgqrs.Consumer(config, "q") as c:
        p.enqueue_batch([{"n": i} for i in range(5)])
        p.enqueue({"later": True}, delay=3600)
        got = c.dequeue(batch=2)
        assert got is not None
        c.archive(got[0])
        stats = admin.queue_stats("q")
        assert (stats.ready, stats.in_flight, stats.delayed) == (3, 1, 1)
        assert stats.archived == {"completed": 1}
        assert stats.oldest_ready_age is not None and stats.oldest_ready_age >= 0
        assert admin.purge_queue("q") == 5
        stats = admin.queue_stats("q")
        assert (stats.ready, stats.in_flight, stats.delayed, stats.oldest_ready_age) == (
            0,
            0,
            0,
            None,
        )
        assert stats.archived == {"completed": 1}  # the archive is kept


def test_pause_stops_delivery_resume_restarts_it(admin: pgqrs.Admin, config: pgqrs.Config) -> None:
    admin.create_queue("q")
    with pgqrs.Producer(config, "q") as p, pgqrs.Consumer(config, "q") as c:
        admin.pause_queue("q")
        p.enqueue({"n": 1})  # enqueues still work while paused
        assert c.dequeue() is None
        assert c.dequeue(batch=5) == []
        assert admin.queue_stats("q").paused
        admin.resume_queue("q")
        msg = c.dequeue()
        assert msg is not None and msg.payload == {"n": 1}


def test_delete_queue_drops_its_messages_keeps_its_archive(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection
) -> None:
    admin.create_queue("q")
    with pgqrs.Producer(config, "q") as p, pgqrs.Consumer(config, "q") as c:
        p.enqueue_batch([1, 2, 3])
        m = c.dequeue()
        assert m is not None
        c.archive(m)
    admin.delete_queue("q")
    s = config.schema
    assert sql.execute(f'SELECT count(*) FROM "{s}".messages').fetchone() == (0,)
    assert sql.execute(f'SELECT count(*) FROM "{s}".archive').fetchone() == (1,)


def test_delete_queue_waits_for_enqueues_in_flight_and_leaves_no_orphan(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection
) -> None:
    """The queue's row lock, taken once per enqueue statement, orders delete and enqueue.

    An enqueue whose transaction is still open when the queue is deleted makes
    the delete wait; once it commits, the delete removes that message too. An
    enqueue after the delete finds no queue (with or without a dedup key).
    """
    admin.create_queue("q")
    s = config.schema
    with psycopg.connect(config.dsn) as held, pgqrs.Producer(config, "q") as p:
        with held.transaction():
            p.enqueue({"n": 1}, connection=held)
            deleted: list[None] = []
            deleter = threading.Thread(target=lambda: deleted.append(admin.delete_queue("q")))
            deleter.start()
            # Wait (on a signal, not a clock) until the delete is blocked on the lock.
            deadline = time.monotonic() + 30
            while not sql.execute(
                "SELECT count(*) > 0 FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%queue_delete%'"
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "queue_delete never waited for the enqueue"
                time.sleep(0.01)
            assert deleter.is_alive()
        deleter.join(30)
        assert deleted == [None]
        with pytest.raises(pgqrs.QueueNotFound):
            p.enqueue({"n": 2})
        with pytest.raises(pgqrs.QueueNotFound):
            p.enqueue({"n": 3}, dedup_key="k")
    orphans = sql.execute(f'SELECT count(*) FROM "{s}".messages').fetchone()
    assert orphans == (0,)
