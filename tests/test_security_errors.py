"""Typed errors naming the value and the fix (issue 15, Why 9 and Why 12).

Each of these raised a raw exception from deep inside (UnicodeEncodeError,
RecursionError, a bare DatabaseError, a CHECK violation, internals of the
wrong object) or a misleading one (archiving twice said the lease expired).
"""

from __future__ import annotations

import asyncio
import datetime
import threading

import pytest

import pgqrs
import pgqrs.aio
from test_cli import Cli

UTC = datetime.timezone.utc


@pytest.fixture
def producer(config: pgqrs.Config, queue: str) -> pgqrs.Producer:
    with pgqrs.Producer(config, queue) as p:
        yield p


# --- Why 9 ----------------------------------------------------------------------


def test_a_dedup_key_with_a_lone_surrogate_is_a_typed_error(producer: pgqrs.Producer) -> None:
    with pytest.raises(pgqrs.InvalidArgument, match=r"dedup_key .* lone UTF-16 surrogate"):
        producer.enqueue({"a": 1}, dedup_key="key-\ud800")
    with pytest.raises(pgqrs.InvalidArgument, match="lone UTF-16 surrogate"):
        producer.enqueue_batch([{"a": 1}], dedup_keys=["\udcff"])


def test_deeply_nested_json_on_the_cli_is_a_usage_error(dsn: str, schema: str) -> None:
    cli = Cli(dsn, schema)
    cli("install")
    cli("queue", "create", "tasks")
    line = cli.error("enqueue", "tasks", "[" * 20_000 + "]" * 20_000, code=2)
    assert "nested too deeply" in line and "RecursionError" not in line


def test_available_at_past_year_9999_is_a_typed_error(producer: pgqrs.Producer) -> None:
    far = datetime.datetime(9999, 12, 31, tzinfo=UTC)
    with pytest.raises(pgqrs.InvalidArgument, match=r"available_at 9999-12-31.*after year 9999"):
        producer.enqueue({"a": 1}, available_at=far, delay=50 * 365 * 86_400)
    ahead = datetime.datetime(
        9999, 12, 31, 23, tzinfo=datetime.timezone(-datetime.timedelta(hours=5))
    )
    with pytest.raises(pgqrs.InvalidArgument, match="after year 9999"):
        producer.enqueue({"a": 1}, available_at=ahead)  # 04:00 UTC on 10000-01-01
    msg = producer.enqueue({"a": 1}, available_at=far)  # the latest that fits still works
    assert msg.visible_until == far


def test_a_sub_microsecond_duration_is_a_typed_error(
    admin: pgqrs.Admin, config: pgqrs.Config, queue: str
) -> None:
    with pytest.raises(pgqrs.InvalidArgument, match=r"visibility_timeout must be at least 1e-06"):
        admin.create_queue("vt", visibility_timeout=1e-9)
    with (
        pgqrs.Consumer(config, queue) as consumer,
        pytest.raises(pgqrs.InvalidArgument, match="at least 1e-06"),
    ):
        consumer.dequeue(visibility_timeout=1e-9)
    with pytest.raises(pgqrs.InvalidArgument, match="at least 1e-06"):
        pgqrs.Worker(config, {queue: lambda m: None}, visibility_timeout=1e-9)
    assert admin.create_queue("vt", visibility_timeout=1e-6).visibility_timeout == 1e-6


# --- Why 12 ---------------------------------------------------------------------


def test_archiving_twice_says_already_archived(
    config: pgqrs.Config, producer: pgqrs.Producer, queue: str
) -> None:
    producer.enqueue({"a": 1})
    with pgqrs.Consumer(config, queue) as consumer:
        msg = consumer.dequeue()
        assert msg is not None
        consumer.archive(msg)
        with pytest.raises(pgqrs.LeaseExpired) as caught:
            consumer.archive(msg)
        text = str(caught.value)
        assert "already archived by this consumer" in text, text
        assert "visibility_timeout" not in text and "redelivered" not in text
        assert caught.value.ids == [msg.id]
        # Deleted, then archived: says deleted.
        producer.enqueue({"a": 2})
        other = consumer.dequeue()
        assert other is not None
        consumer.delete(other)
        with pytest.raises(pgqrs.LeaseExpired, match="already deleted by this consumer"):
            consumer.archive(other)
    # Another consumer, which never held it: gone from the queue, not "lease expired".
    with (
        pgqrs.Consumer(config, queue) as stranger,
        pytest.raises(pgqrs.LeaseExpired, match="no longer in the queue"),
    ):
        stranger.archive(msg)


def test_blocking_worker_run_inside_an_event_loop_points_to_the_async_worker(
    config: pgqrs.Config, queue: str
) -> None:
    worker = pgqrs.Worker(config, {queue: lambda m: None})

    async def main() -> None:
        worker.run()

    with pytest.raises(RuntimeError, match=r"pgqrs\.aio\.Worker"):
        asyncio.run(main())


def test_a_wrong_connection_object_says_what_is_accepted(config: pgqrs.Config, queue: str) -> None:
    with pgqrs.Producer(config, queue) as producer:
        with pytest.raises(pgqrs.InvalidArgument, match=r"takes an open psycopg\.Connection") as e:
            producer.enqueue({"a": 1}, connection=threading.Lock())  # type: ignore[arg-type]
        assert "_thread.lock" in str(e.value) and "context manager" not in str(e.value)

    async def main() -> None:
        async with pgqrs.aio.Producer(config, queue) as producer:
            with pytest.raises(pgqrs.InvalidArgument, match=r"psycopg\.AsyncConnection"):
                await producer.enqueue({"a": 1}, connection=object())  # type: ignore[arg-type]

    asyncio.run(main())


@pytest.mark.parametrize("status", ["donez", "complete", "Completed", "ok"])
def test_an_unknown_archive_status_is_refused(
    status: str, config: pgqrs.Config, producer: pgqrs.Producer, queue: str, admin: pgqrs.Admin
) -> None:
    producer.enqueue({"a": 1})
    with pgqrs.Consumer(config, queue) as consumer:
        msg = consumer.dequeue()
        assert msg is not None
        with pytest.raises(pgqrs.InvalidArgument, match=r"unknown archive status .*'completed'"):
            consumer.archive(msg, status)
        with pytest.raises(pgqrs.InvalidArgument, match="'failed', 'dead'"):
            admin.list_archive(queue, status=status)
        consumer.archive(msg, "failed")  # a listed one still works
    assert [r.status for r in admin.list_archive(queue)] == ["failed"]
