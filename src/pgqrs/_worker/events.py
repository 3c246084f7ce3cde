"""Per-job events a user can subscribe to, counters a user can read, and
signals (test hooks) a test can await instead of polling or sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal, get_args

from pgqrs._errors import InvalidArgument
from pgqrs._models import Message

logger = logging.getLogger("pgqrs.worker")

EventKind = Literal[
    "started", "completed", "failed", "retried", "dead", "lease_lost", "interrupted", "cancelled"
]
#: The event kinds, in the order a job can go through them.
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)


@dataclasses.dataclass(frozen=True, slots=True)
class JobEvent:
    """Something that happened to one job.

    * ``started``: the handler was called.
    * ``completed``: the message was archived as completed (``result``).
    * ``failed``: the handler raised (``error``); ``retried`` or ``dead`` follows.
    * ``retried``: the message went back to its queue, visible after ``delay`` s.
    * ``dead``: the message was archived as dead (attempts used up, or Abort).
    * ``lease_lost``: the worker no longer held the lease (it expired and
      another consumer took the message); this worker's outcome was not written.
    * ``interrupted``: the worker stopped before the handler returned (grace
      period over, or a second signal): the message is released.
    * ``cancelled``: the message was archived as cancelled (``Admin.cancel``
      while it was held: the handler was cancelled, or its result ignored).
    """

    kind: EventKind
    message: Message
    worker_id: int | None
    result: Any = None
    error: BaseException | None = None
    delay: float | None = None


Subscriber = Callable[[JobEvent], Any]


@dataclasses.dataclass
class Counters:
    """Running totals of one worker, readable at any time (from any thread)."""

    #: Handlers that finished, whatever the outcome.
    processed: int = 0
    #: Messages archived as completed.
    completed: int = 0
    #: Handler calls that raised (Retry excepted).
    failed: int = 0
    #: Messages put back on their queue for another attempt.
    retried: int = 0
    #: Messages archived as dead.
    dead: int = 0
    #: Messages archived as cancelled (Admin.cancel while this worker held them).
    cancelled: int = 0
    #: Outcomes not written because the lease was lost.
    lease_lost: int = 0
    #: Messages dequeued ahead of a free slot (prefetched: they waited, leased, for one).
    prefetched: int = 0
    #: Messages this worker holds leased right now: handlers running or about
    #: to start, prefetched ones waiting for a slot, plus those whose handler
    #: has returned and whose outcome waits to be written (the completion
    #: backlog). At most ``concurrency + completion_backlog``.
    in_flight: int = 0
    #: Handlers running (or about to start) right now: at most ``concurrency``.
    #: ``in_flight`` and ``running`` are kept by the job table (``jobs``).
    running: int = 0


def check_kind(kind: object) -> None:
    if kind is not None and kind not in EVENT_KINDS:
        raise InvalidArgument(
            f"unknown event {kind!r}: expected one of {', '.join(EVENT_KINDS)}, or None for all"
        )


class Events:
    """Calls subscribers on the event loop's thread; a subscriber that raises is
    logged and otherwise ignored (it must never break the worker)."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[str | None, Subscriber]] = []
        #: Someone subscribed: events are worth building (checked once per job).
        self.active = False

    def subscribe(self, kind: EventKind | None, callback: Subscriber) -> Callable[[], None]:
        check_kind(kind)
        if not callable(callback):
            raise InvalidArgument(f"event subscriber must be callable, got {callback!r}")
        entry = (kind, callback)
        self._subscribers.append(entry)
        self.active = True

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
            self.active = bool(self._subscribers)

        return unsubscribe

    def build(
        self, kind: EventKind, m: Message, worker_id: int | None, **extra: Any
    ) -> JobEvent | None:
        """The event to emit later; None when nobody listens (not built per job for nothing)."""
        return JobEvent(kind, m, worker_id, **extra) if self.active else None

    def emit_now(self, kind: EventKind, m: Message, worker_id: int | None, **extra: Any) -> None:
        if self.active:
            self.emit(JobEvent(kind, m, worker_id, **extra))

    def emit(self, event: JobEvent) -> None:
        for kind, callback in list(self._subscribers):
            if kind is None or kind == event.kind:
                try:
                    callback(event)
                except Exception:
                    logger.exception("event subscriber %r raised on %s event", callback, event.kind)


# -- signals: test hooks ---------------------------------------------------------------------

#: The signals a worker fires (``Worker.signals.<name>``).
SIGNAL_NAMES: tuple[str, ...] = (
    "registered",
    "listening",
    "heartbeat",
    "fetched",
    "idle",
    "lease_extended",
    "outcome_written",
    "any",
)


class Signal:
    """One kind of moment in a worker's life, counted as it happens.

    A test waits for the state it expects, checked again at each firing,
    rather than polling the database or sleeping::

        await worker.signals.outcome_written.wait(lambda: worker.counters.completed == 10)
        await worker.signals.listening.wait()  # the next firing

    Fired on the worker's event loop; ``wait`` is for coroutines (any loop),
    ``wait_blocking`` for other threads (the blocking ``pgqrs.Worker``).
    """

    def __init__(self, name: str, parent: Signal | None = None) -> None:
        """``parent``: fired too, each time this one fires (``Signals.any``)."""
        self.name = name
        self._parent = parent
        self._count = 0
        self._cond = threading.Condition()
        self._waiters: list[tuple[Callable[[], object], asyncio.Future[None]]] = []
        #: Threads in ``wait_blocking``.
        self._blocking = 0

    @property
    def count(self) -> int:
        """Times it fired since the worker was created (``n`` at once counts n)."""
        return self._count

    def fire(self, n: int = 1) -> None:
        self._count += n
        if self._parent is not None:
            self._parent.fire(n)
        # Cheap when nobody waits (once per job): the lock only for waiters.
        # A blocking waiter counts itself before it checks its condition, so
        # either it sees the new count or this sees it waiting.
        if self._waiters or self._blocking:
            self._wake()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
            waiters = self._waiters
            self._waiters = []
        keep: list[tuple[Callable[[], object], asyncio.Future[None]]] = []
        for until, future in waiters:
            if future.done():
                continue
            try:
                met = bool(until())
            except Exception as exc:
                with contextlib.suppress(RuntimeError):
                    future.get_loop().call_soon_threadsafe(_settle, future, exc)
                continue
            if met:
                with contextlib.suppress(RuntimeError):  # the waiter's loop is closed
                    future.get_loop().call_soon_threadsafe(_settle, future, None)
            else:
                keep.append((until, future))
        if keep:
            with self._cond:
                self._waiters.extend(keep)

    def _until(self, until: Callable[[], object] | None) -> Callable[[], object]:
        if until is not None:
            return until
        target = self._count + 1
        return lambda: self._count >= target

    async def wait(
        self, until: Callable[[], object] | None = None, *, timeout: float | None = None
    ) -> None:
        """Return once ``until()`` is true, checked now and after each firing
        (None: at the next firing). ``TimeoutError`` after ``timeout`` seconds."""
        until = self._until(until)
        if until():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            self._waiters.append((until, future))
        if until():  # fired from another thread in between
            return
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(self._timed_out(timeout)) from None

    def wait_blocking(
        self, until: Callable[[], object] | None = None, *, timeout: float | None = None
    ) -> None:
        """``wait`` for a thread other than the worker's event loop."""
        until = self._until(until)
        with self._cond:
            self._blocking += 1
            try:
                if not self._cond.wait_for(until, timeout):
                    raise TimeoutError(self._timed_out(timeout))
            finally:
                self._blocking -= 1

    def _timed_out(self, timeout: float | None) -> str:
        return f"signal {self.name!r}: not reached within {timeout}s (fired {self._count} times)"


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


class Signals:
    """The worker's signals (test hooks): see ``Signal`` for waiting on them.

    * ``registered``: the worker's row was written (at start, and again after a prune).
    * ``listening``: the LISTEN connection is up (at start, and after each reconnect).
    * ``heartbeat``: a heartbeat was written (and the reaping due with it done).
    * ``fetched``: a dequeue returned (the messages, if any, are in the worker's hands).
    * ``idle``: the worker holds no message and the last dequeue of each of its
      queues found none: all it was given is done, and nothing waits.
    * ``lease_extended``: leases were extended (counted per message).
    * ``outcome_written``: a held message's outcome was written (completed,
      retried, dead or released), or found lost; the counters are updated first.
    * ``schedule_tick``: a schedule tick ended (what was due is enqueued).
    * ``any``: fired with each of the others, to wait for a condition that
      any of them may bring about (e.g. on ``counters``).
    """

    def __init__(self) -> None:
        self.any = Signal("any")
        self.registered = Signal("registered", self.any)
        self.listening = Signal("listening", self.any)
        self.heartbeat = Signal("heartbeat", self.any)
        self.fetched = Signal("fetched", self.any)
        self.idle = Signal("idle", self.any)
        self.lease_extended = Signal("lease_extended", self.any)
        self.outcome_written = Signal("outcome_written", self.any)
        self.schedule_tick = Signal("schedule_tick", self.any)
