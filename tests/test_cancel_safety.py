"""Issue 15, fault 11: cancelling an asyncio call never strands messages.

psycopg answers a cancelled task by asking the server to cancel the statement;
one that had already run (the dequeue leased its messages, the archive
committed) stays done, and its result was dropped with the task. To hit that
window every time, the real round trip is followed by a wait the test controls
(latency injected after the statement, as a slow network would add): the
task is cancelled while the answer is "on the wire".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

import pgqrs
from pgqrs._async import _calls

Conn = psycopg.Connection[tuple[Any, ...]]


def delayed_answers(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> tuple[asyncio.Event, asyncio.Event]:
    """Make ``_calls.<name>`` run its statement, then hold the answer until
    ``release`` is set; ``ran`` is set once the statement has run."""
    real: Callable[..., Awaitable[Any]] = getattr(_calls, name)
    ran, release = asyncio.Event(), asyncio.Event()

    async def slow(*args: Any, **kwargs: Any) -> Any:
        answer = await real(*args, **kwargs)
        ran.set()
        await release.wait()
        return answer

    monkeypatch.setattr(_calls, name, slow)
    return ran, release


def rows(sql: Conn, schema: str) -> list[tuple[int, int, bool]]:
    """(id, attempts, ready now) of every message, by id."""
    return sql.execute(
        f'SELECT id, attempts, lease IS NULL AND visible_at <= now() FROM "{schema}".messages '
        "ORDER BY id",
        prepare=False,
    ).fetchall()


def eventually(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.mark.parametrize("how", ["cancel", "wait_for"])
async def test_a_cancelled_dequeue_gives_its_messages_back_with_the_attempt_refunded(
    monkeypatch: pytest.MonkeyPatch,
    config: pgqrs.Config,
    sql: Conn,
    schema: str,
    queue: str,
    how: str,
) -> None:
    """Before: both messages stayed leased, attempt charged, until the lease ran out."""
    async with pgqrs.aio.Producer(config, queue) as p:
        await p.enqueue_batch([{"n": 1}, {"n": 2}])
    ran, _release = delayed_answers(monkeypatch, "message_dequeue")
    async with pgqrs.aio.Consumer(config, queue) as c:
        if how == "cancel":
            task = asyncio.create_task(c.dequeue(batch=2, visibility_timeout=300))
            await ran.wait()  # leased on the server, the answer not read yet
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:

            async def cut_when_leased() -> None:
                await ran.wait()
                waiter.cancel()

            waiter = asyncio.create_task(
                asyncio.wait_for(c.dequeue(batch=2, visibility_timeout=300), timeout=300)
            )
            await cut_when_leased()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        _release.set()  # the background round trip now ends and gives the messages back
        await asyncio.to_thread(
            eventually,
            "both messages ready again, attempts refunded",
            lambda: [r[1:] for r in rows(sql, schema)] == [(0, True), (0, True)],
        )
        monkeypatch.undo()
        again = await c.dequeue(batch=2)
        assert [m.attempts for m in again] == [1, 1]


async def test_a_cancelled_archive_that_committed_is_known_as_done(
    monkeypatch: pytest.MonkeyPatch, config: pgqrs.Config, sql: Conn, schema: str, queue: str
) -> None:
    """Before: the retry said the lease was lost (or the message gone), not that
    this consumer had archived it."""
    async with pgqrs.aio.Producer(config, queue) as p:
        await p.enqueue({"n": 1})
    async with pgqrs.aio.Consumer(config, queue) as c:
        m = await c.dequeue()
        assert m is not None
        ran, release = delayed_answers(monkeypatch, "message_archive")
        task = asyncio.create_task(c.archive(m))
        await ran.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        for _ in range(100):  # the background round trip records what it did
            await asyncio.sleep(0.01)
            if m.id in c._leases.settled:
                break
        monkeypatch.undo()
        with pytest.raises(pgqrs.LeaseExpired, match="already archived by this consumer"):
            await c.archive(m)
    status = sql.execute(f'SELECT status FROM "{schema}".archive WHERE id = %s', (m.id,)).fetchone()
    assert status == ("completed",)


async def test_archiving_twice_says_already_archived(config: pgqrs.Config, queue: str) -> None:
    async with pgqrs.aio.Producer(config, queue) as p:
        await p.enqueue({"n": 1})
    async with pgqrs.aio.Consumer(config, queue) as c:
        m = await c.dequeue()
        assert m is not None
        await c.archive(m)
        with pytest.raises(pgqrs.LeaseExpired, match="already archived by this consumer"):
            await c.archive(m.id)
