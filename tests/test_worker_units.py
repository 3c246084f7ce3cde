"""The worker's pure parts, without a database: the job table and its slot
accounting, prefetch sizing, the outcome decision, calling a handler, and the
completer's batching (with a fake writer in place of the database; the
worker tests in test_worker.py run all of it against a real server).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import uuid
from typing import Any

import pytest

import pgqrs
from pgqrs._errors import ConnectionFailed
from pgqrs._models import Message
from pgqrs._payload import encode_json
from pgqrs._worker.completer import Completer, Settlement, fail_groups
from pgqrs._worker.events import Counters, Signal
from pgqrs._worker.fetcher import QueueState
from pgqrs._worker.handlers import (
    MAX_ERROR_MESSAGE,
    MAX_TRACEBACK,
    DaemonThreads,
    call,
    error_json,
    error_record,
    make_spec,
)
from pgqrs._worker.jobs import MOVES, JobState, JobStateError, JobTable
from pgqrs._worker.outcome import Raised, Returned, Settle, Stopped, decide
from pgqrs._worker.prefetch import Prefetch
from pgqrs._worker.slots import Slots

_ids = iter(range(1, 1_000_000))
EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def msg(queue: str = "tasks", attempts: int = 1, **payload: Any) -> Message:
    return Message(
        id=next(_ids),
        queue=queue,
        payload=payload,
        priority=0,
        attempts=attempts,
        enqueued_at=EPOCH,
        dequeued_at=EPOCH,
        visible_until=EPOCH + datetime.timedelta(seconds=30),
        headers={},
        lease=uuid.uuid4(),
    )


class Table:
    """A job table over one or two queues, recording the fetchers' wake-ups."""

    def __init__(self, total: int = 2, backlog: int = 2, limits: tuple[int, ...] = (2,)) -> None:
        self.queues = [QueueState(name=f"q{i}", limit=limit) for i, limit in enumerate(limits)]
        self.wakes = 0
        self.slots = Slots(total, backlog, self.queues, self._wake)
        self.counters = Counters()
        self.jobs = JobTable(self.slots, self.counters)

    def _wake(self) -> None:
        self.wakes += 1

    def counts(self) -> dict[str, int]:
        return {s.value: self.jobs.count(s) for s in JobState}


# -- the job table ----------------------------------------------------------------------------


def test_a_job_goes_running_settling_written_and_the_counts_follow() -> None:
    t = Table()
    q = t.queues[0]
    t.slots.reserve(q, 1, 0)  # a dequeue asks for one slot
    assert t.slots.used == 1 and t.slots.free(q) == 1
    t.slots.unreserve(q, 1, 0, unused=0)
    job = t.jobs.add(q, msg(), JobState.RUNNING)
    assert t.counts() == {"prefetched": 0, "running": 1, "settling": 0}
    assert (t.slots.used, q.used, t.counters.running, t.counters.in_flight) == (1, 1, 1, 1)
    t.jobs.settle(job)  # the handler returned: the slot is free, the write pending
    assert job.state is JobState.SETTLING
    assert t.counts() == {"prefetched": 0, "running": 0, "settling": 1}
    assert (t.slots.used, t.slots.backlog, t.counters.running, t.counters.in_flight) == (0, 1, 0, 1)
    assert t.wakes == 1  # a slot freed: the fetchers look again
    assert t.jobs.remove(job.message) is job
    assert len(t.jobs) == 0 and t.slots.held == 0 and t.counters.in_flight == 0
    assert t.jobs.remove(job.message) is None  # already gone: nothing counted twice
    assert t.slots.held == 0


def test_prefetched_jobs_start_in_order_when_a_slot_frees() -> None:
    t = Table(total=1, backlog=4, limits=(1,))
    q = t.queues[0]
    running = t.jobs.add(q, msg(), JobState.RUNNING)
    waiting = [t.jobs.add(q, msg(), JobState.PREFETCHED) for _ in range(2)]
    assert q.prefetched == 2 and t.slots.waiting == 2 and t.counters.in_flight == 3
    assert t.jobs.start_waiting([q]) == []  # no free slot
    t.jobs.settle(running)
    started = t.jobs.start_waiting([q])
    assert started == waiting[:1] and started[0].state is JobState.RUNNING
    assert (q.prefetched, t.slots.running, t.slots.settling) == (1, 1, 1)


def test_a_queue_limit_holds_while_the_worker_has_slots() -> None:
    t = Table(total=4, backlog=4, limits=(1, 4))
    narrow, wide = t.queues
    t.jobs.add(narrow, msg(), JobState.RUNNING)
    t.jobs.add(narrow, msg(), JobState.PREFETCHED)
    t.jobs.add(wide, msg(), JobState.PREFETCHED)
    started = t.jobs.start_waiting([narrow, wide])
    assert [j.queue for j in started] == [wide]  # narrow is at its limit of 1
    assert t.slots.free(narrow) == 0 and t.slots.free(wide) == 2


def test_giving_back_prefetched_jobs_frees_their_place_without_a_slot() -> None:
    t = Table(total=1, backlog=4, limits=(1,))
    q = t.queues[0]
    ahead = [t.jobs.add(q, msg(), JobState.PREFETCHED) for _ in range(3)]
    taken = t.jobs.give_back_waiting(q, among=ahead[1:])
    assert taken == ahead[1:] and all(j.state is JobState.SETTLING for j in taken)
    assert (q.prefetched, t.slots.waiting, t.slots.backlog, t.slots.used) == (1, 1, 2, 0)
    assert t.wakes == 0  # no slot freed
    assert t.jobs.give_back_waiting() == ahead[:1]
    assert t.jobs.start_waiting([q]) == []  # nothing left waiting


def test_the_held_bound_counts_every_state_and_the_reservations() -> None:
    """Held (running + prefetched + settling) plus what dequeues asked for stays
    within concurrency + completion_backlog: at the bound nothing is fetched,
    even for a free slot, until a write frees room (which wakes the fetchers)."""
    t = Table(total=2, backlog=2, limits=(2,))
    q = t.queues[0]
    jobs = [t.jobs.add(q, msg(), JobState.RUNNING) for _ in range(2)]
    t.jobs.settle(jobs[0])
    assert t.slots.free(q) == 1  # a slot, and room for it
    t.slots.reserve(q, 1, 1)  # a dequeue asks for it, and one ahead
    assert t.slots.held_room() == 0 and t.slots.free(q) == 0
    t.slots.unreserve(q, 1, 1, unused=0)
    late = t.jobs.add(q, msg(), JobState.RUNNING)
    t.jobs.settle(late)
    t.jobs.settle(jobs[1])
    t.jobs.add(q, msg(), JobState.RUNNING)
    assert (t.slots.used, t.slots.backlog, t.slots.held) == (1, 3, 4)
    assert t.slots.free(q) == 0  # a free slot, but no room under the bound
    wakes = t.wakes
    t.jobs.remove(jobs[0].message)  # a write done at the bound: room again
    assert t.slots.free(q) == 1 and t.wakes == wakes + 1


@pytest.mark.parametrize("before", list(JobState))
@pytest.mark.parametrize("after", [None, *JobState])
def test_the_table_refuses_every_move_not_in_the_diagram(
    before: JobState, after: JobState | None
) -> None:
    t = Table(total=4, backlog=4, limits=(4,))
    q = t.queues[0]
    first = JobState.PREFETCHED if before is JobState.PREFETCHED else JobState.RUNNING
    job = t.jobs.add(q, msg(), first)
    if before is JobState.SETTLING:
        t.jobs.settle(job)
    counts = (t.slots.running, t.slots.prefetched, t.slots.settling)
    if (before, after) in MOVES:
        t.jobs._move(job, after)
        assert job.state is after
        return
    with pytest.raises(JobStateError, match=f"message {job.message.id} .* cannot go from"):
        t.jobs._move(job, after)
    assert job.state is before
    assert (t.slots.running, t.slots.prefetched, t.slots.settling) == counts  # untouched


def test_the_public_moves_refuse_the_wrong_state() -> None:
    t = Table(total=4, backlog=4, limits=(4,))
    q = t.queues[0]
    with pytest.raises(JobStateError, match="not held to settling"):
        t.jobs.add(q, msg(), JobState.SETTLING)
    waiting = t.jobs.add(q, msg(), JobState.PREFETCHED)
    with pytest.raises(JobStateError, match="only a running job settles here"):
        t.jobs.settle(waiting)
    running = t.jobs.add(q, msg(), JobState.RUNNING)
    with pytest.raises(JobStateError, match="cannot go from running to not held"):
        t.jobs.remove(running.message)  # its outcome is not even decided
    assert len(t.jobs) == 2 and t.slots.held == 2


def test_a_lease_is_held_once() -> None:
    t = Table()
    m = msg()
    t.jobs.add(t.queues[0], m, JobState.RUNNING)
    with pytest.raises(JobStateError, match="already held"):
        t.jobs.add(t.queues[0], m, JobState.RUNNING)
    assert t.slots.running == 1


# -- prefetch sizing ------------------------------------------------------------------------------


def test_auto_prefetch_takes_nothing_ahead_once_a_wait_showed_slow_handlers() -> None:
    """Prefetch.slowed (a prefetched message waited that long): no more fetched ahead."""
    q = QueueState(name="tasks", limit=4)
    slots = Slots(4, 200, [q])
    prefetch = Prefetch(slots, None, horizon=0.002, per_slot=6, duration_weight=0.25)
    assert prefetch.ahead(q) == 0  # no handler has returned yet
    prefetch.finished(q, 0.0001)  # no-op handlers: the cap
    assert prefetch.ahead(q) == 24 and prefetch.extra(q, 0) == 24
    prefetch.slowed(q, 0.5)
    assert prefetch.ahead(q) == 0 and prefetch.extra(q, 0) == 0


def test_fixed_prefetch_stays_within_the_held_bound_and_waits_for_what_waits() -> None:
    t = Table(total=2, backlog=3, limits=(2,))
    q = t.queues[0]
    prefetch = Prefetch(t.slots, 10)
    assert prefetch.extra(q, 2) == 3  # 2 + 3 held at most
    t.jobs.add(q, msg(), JobState.PREFETCHED)
    assert prefetch.extra(q, 2) == 0  # some of q's wait already


# -- the outcome decision ------------------------------------------------------------------------


def test_a_returned_handler_completes() -> None:
    d = decide(Returned({"ok": 1}, '{"ok": 1}'), 1, None)
    assert (d.settle, d.failed, d.error) == (Settle.COMPLETED, False, None)


def test_a_failure_is_left_to_message_fail_with_the_backoff() -> None:
    """Retry or dead is the server's call (the queue's max_attempts); the
    decision asks for neither a delay nor a death."""
    boom = ValueError("boom")
    for attempt in (1, 3, 50):
        d = decide(Raised(boom), attempt, None)
        assert (d.settle, d.delay, d.dead, d.aborted, d.error, d.failed) == (
            Settle.FAIL,
            None,
            False,
            False,
            boom,
            True,
        )


def test_the_handlers_own_lower_max_attempts_forces_dead() -> None:
    """Only the worker knows a handler's max_attempts below the queue's."""
    boom = ValueError("boom")
    assert not decide(Raised(boom), 1, 2).dead
    d = decide(Raised(boom), 2, 2)
    assert (d.settle, d.dead, d.aborted, d.failed) == (Settle.FAIL, True, False, True)


def test_retry_asks_its_own_delay_and_does_not_count_as_failed() -> None:
    exc = pgqrs.Retry(delay=7)
    d = decide(Raised(exc, retry=True, delay=7), 1, None)
    assert (d.settle, d.delay, d.dead, d.failed) == (Settle.FAIL, 7, False, False)
    d = decide(Raised(exc, retry=True, delay=None), 2, None)
    assert (d.delay, d.failed) == (None, False)  # the backoff's, in SQL


def test_abort_is_dead_at_once() -> None:
    exc = pgqrs.Abort("no")
    d = decide(Raised(exc, abort=True), 1, None)
    assert (d.settle, d.dead, d.aborted, d.error, d.failed) == (
        Settle.FAIL,
        True,
        True,
        exc,
        True,
    )


def test_a_stopped_handler_is_released_without_a_delay() -> None:
    d = decide(Stopped(), 1, 1)
    assert (d.settle, d.delay, d.error, d.failed) == (Settle.RELEASED, None, None, False)


def test_failed_attempts_are_written_one_statement_per_backoff() -> None:
    """The completer's grouping for message_fail: one statement per distinct
    backoff (handlers may each have their own), input order kept."""
    a, b = pgqrs.Backoff(base=1, max=10), pgqrs.Backoff(base=2, max=10)
    todo = [
        Settlement(message=msg(), kind="fail", backoff=a),
        Settlement(message=msg(), kind="archive"),
        Settlement(message=msg(), kind="fail", backoff=b),
        Settlement(message=msg(), kind="fail", backoff=pgqrs.Backoff(base=1, max=10)),
        Settlement(message=msg(), kind="release"),
    ]
    groups = fail_groups(todo)
    assert list(groups) == [a, b]
    assert groups[a] == [todo[0], todo[3]] and groups[b] == [todo[2]]


async def test_calling_a_handler_names_how_it_ended() -> None:
    """handlers.call: each way a handler can end, as the decision reads it."""

    async def handler(m: Message) -> Any:
        kind = m.payload["kind"]
        if kind == "retry":
            raise pgqrs.Retry(delay=3)
        if kind == "abort":
            raise pgqrs.Abort("stop")
        if kind == "raise":
            raise KeyError("k")
        if kind == "big":
            return "x" * 400
        return {"n": 1}

    spec = make_spec(
        "tasks", handler, concurrency=None, backoff=None, max_attempts=None, visibility_timeout=None
    )
    threads = DaemonThreads(1, "test")
    try:
        ok = await call(spec, msg(kind="ok"), threads, 50)
        assert ok == Returned({"n": 1}, '{"n":1}')
        retry = await call(spec, msg(kind="retry"), threads, 50)
        assert isinstance(retry, Raised) and retry.retry and retry.delay == 3
        abort = await call(spec, msg(kind="abort"), threads, 50)
        assert isinstance(abort, Raised) and abort.abort and not abort.retry
        raised = await call(spec, msg(kind="raise"), threads, 50)
        assert isinstance(raised, Raised) and isinstance(raised.error, KeyError)
        assert not (raised.retry or raised.abort)
        # The result is refused: still a success, recorded as unstorable, never re-run.
        big = await call(spec, msg(kind="big"), threads, 300)
        assert isinstance(big, Returned) and big.result == "x" * 400
        assert big.result_json is not None
        assert json.loads(big.result_json)["unstorable"] == "str"
        sync_spec = make_spec(
            "tasks",
            lambda m: m.payload["n"] * 2,
            concurrency=None,
            backoff=None,
            max_attempts=None,
            visibility_timeout=None,
        )
        doubled = await call(sync_spec, msg(n=21), threads, 50)
        assert isinstance(doubled, Returned) and doubled.result == 42
    finally:
        threads.shutdown()


# -- the completer's batching -------------------------------------------------------------------


class FakeWriter:
    """Records each batch and resolves it 'ok'; can fail a number of times first."""

    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.wrote = Signal("wrote")

    async def __call__(self, todo: list[Settlement]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionFailed("connection lost")
        self.batches.append([s.message.id for s in todo])
        for s in todo:
            s.resolve("ok")
        self.wrote.fire()


def settlement(m: Message | None = None, outcomes: list[str] | None = None) -> Settlement:
    def done(s: Settlement, outcome: str) -> None:
        if outcomes is not None:
            outcomes.append(outcome)

    return Settlement(message=m or msg(), kind="archive", on_done=done)


async def run_completer(
    writer: FakeWriter, *, flush_size: int, flush_interval: float, idle: bool = False
) -> tuple[Completer, asyncio.Task[None]]:
    completer = Completer(
        writer, flush_interval=flush_interval, flush_size=flush_size, idle=lambda: idle
    )
    return completer, asyncio.create_task(completer.run())


async def finish(completer: Completer, task: asyncio.Task[None]) -> None:
    completer.finish()
    await asyncio.wait_for(task, 10)


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    writer = FakeWriter()
    completer, task = await run_completer(writer, flush_size=3, flush_interval=3600)
    outcomes: list[str] = []
    for _ in range(3):
        completer.submit(settlement(outcomes=outcomes))
    await writer.wrote.wait(lambda: writer.batches, timeout=10)  # long before the hour
    assert [len(b) for b in writer.batches] == [3] and outcomes == ["ok"] * 3
    await finish(completer, task)


async def test_a_partial_batch_waits_for_company_then_goes_as_one() -> None:
    writer = FakeWriter()
    completer, task = await run_completer(writer, flush_size=100, flush_interval=0.5)
    completer.submit(settlement())
    for _ in range(5):  # the completer runs, and waits for the interval
        await asyncio.sleep(0)
    assert writer.batches == []
    completer.submit(settlement())
    await writer.wrote.wait(lambda: writer.batches, timeout=10)
    assert [len(b) for b in writer.batches] == [2]
    await finish(completer, task)


async def test_an_idle_worker_writes_at_once_and_a_nudge_flushes() -> None:
    writer = FakeWriter()
    completer, task = await run_completer(writer, flush_size=100, flush_interval=3600, idle=True)
    completer.submit(settlement())
    await writer.wrote.wait(lambda: writer.batches, timeout=10)
    await finish(completer, task)
    busy = FakeWriter()
    completer, task = await run_completer(busy, flush_size=100, flush_interval=3600)
    completer.submit(settlement())
    completer.nudge()  # the worker went idle
    await busy.wrote.wait(lambda: busy.batches, timeout=10)
    await finish(completer, task)


async def test_batches_hold_at_most_flush_size_and_a_message_once() -> None:
    writer = FakeWriter()
    completer, task = await run_completer(writer, flush_size=3, flush_interval=3600)
    m = msg()
    settlements = [settlement(m), settlement(m)] + [settlement() for _ in range(5)]
    for s in settlements:
        completer.submit(s)
    completer.hurry(float("inf"))  # stopping: write everything now
    await finish(completer, task)
    assert [len(b) for b in writer.batches] == [3, 3, 1]
    assert all(len(set(b)) == len(b) for b in writer.batches)  # never the same message twice
    assert sorted(i for b in writer.batches for i in b) == sorted(s.message.id for s in settlements)


async def test_a_failed_write_is_retried_until_written() -> None:
    writer = FakeWriter(fail=2)
    completer, task = await run_completer(writer, flush_size=1, flush_interval=3600)
    outcomes: list[str] = []
    completer.submit(settlement(outcomes=outcomes))
    await writer.wrote.wait(lambda: writer.batches, timeout=10)
    assert outcomes == ["ok"] and writer.fail == 0
    await finish(completer, task)


async def test_stopping_gives_up_on_writes_after_the_deadline() -> None:
    writer = FakeWriter(fail=1_000_000)
    completer, task = await run_completer(writer, flush_size=10, flush_interval=3600)
    outcomes: list[str] = []
    completer.submit(settlement(outcomes=outcomes))
    completer.hurry(0.0)  # the deadline has passed: the first failure is the last
    await finish(completer, task)
    assert outcomes == ["unwritten"] and writer.batches == []


# -- signals -------------------------------------------------------------------------------


async def test_a_signal_wakes_its_waiters_when_their_condition_holds() -> None:
    sig = Signal("outcome_written")
    state = {"n": 0}
    waiter = asyncio.create_task(sig.wait(lambda: state["n"] >= 2, timeout=10))
    nxt = asyncio.create_task(sig.wait(timeout=10))  # the next firing
    await asyncio.sleep(0)
    state["n"] = 1
    sig.fire()
    await asyncio.wait_for(nxt, 10)
    assert not waiter.done()
    state["n"] = 2
    sig.fire()
    await asyncio.wait_for(waiter, 10)
    assert sig.count == 2
    await sig.wait(lambda: True)  # already true: at once
    with pytest.raises(TimeoutError, match="'outcome_written'"):
        await sig.wait(lambda: False, timeout=0.01)


def test_a_signal_can_be_awaited_from_another_thread() -> None:
    import threading

    sig = Signal("idle")
    firer = threading.Timer(0.01, sig.fire, kwargs={"n": 3})
    firer.start()
    sig.wait_blocking(lambda: sig.count >= 3, timeout=10)
    firer.join()


def test_an_error_record_is_always_storable(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 15, fault 2: a handler error of 600 KB, with a NUL and a lone
    surrogate, gives a record PostgreSQL accepts, cut to the documented sizes,
    and a log line says so."""
    try:
        raise ValueError("a\x00b\ud800c" + "x" * 600_000)
    except ValueError as exc:
        err = exc
    with caplog.at_level(logging.WARNING, logger="pgqrs.worker"):
        record = error_record(err, 1, 7)
    assert "cut" in caplog.text
    text = error_json(record, 1_048_576)
    assert text is not None
    encode_json(json.loads(text), "error", 1_048_576)  # the client's own checks pass
    stored = json.loads(text)
    assert stored["message"].startswith("a\ufffdb\ufffdc")
    assert len(stored["message"]) < MAX_ERROR_MESSAGE + 50
    assert len(stored["traceback"]) < MAX_TRACEBACK + 50
    assert "test_an_error_record_is_always_storable" in stored["traceback"]  # its frames kept
    assert stored["traceback"].rstrip().endswith("characters cut]")
    # A tiny max_payload_bytes: the record shrinks rather than being refused.
    small = error_json(record, 400)
    assert small is not None and json.loads(small)["traceback"] is None


def test_an_exception_whose_str_raises_still_gives_a_record() -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    record = error_record(Nasty(), 1, None)
    assert "str() of the exception failed" in record["message"]
