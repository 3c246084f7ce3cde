"""Per-job events a user can subscribe to, and counters a user can read."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Literal

from pgqrs._errors import InvalidArgument
from pgqrs._models import Message

logger = logging.getLogger("pgqrs.worker")

EventKind = Literal[
    "started", "completed", "failed", "retried", "dead", "lease_lost", "cancelled"
]
#: The event kinds, in the order a job can go through them.
EVENT_KINDS: tuple[str, ...] = (
    "started",
    "completed",
    "failed",
    "retried",
    "dead",
    "lease_lost",
    "cancelled",
)


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
    * ``cancelled``: the worker stopped before the handler returned (grace
      period over, or a second signal): the message is released.
    """

    kind: str
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
    #: Outcomes not written because the lease was lost.
    lease_lost: int = 0
    #: Messages dequeued ahead of a free slot (prefetched: they waited, leased, for one).
    prefetched: int = 0
    #: Messages this worker holds leased right now: handlers running or about
    #: to start, prefetched ones waiting for a slot, plus those whose handler
    #: has returned and whose outcome waits to be written (the completion
    #: backlog). At most ``concurrency + completion_backlog``.
    in_flight: int = 0
    #: Handlers running right now: at most ``concurrency``.
    running: int = 0


def check_kind(kind: str | None) -> None:
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

    def subscribe(self, kind: str | None, callback: Subscriber) -> Callable[[], None]:
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

    def emit(self, event: JobEvent) -> None:
        for kind, callback in list(self._subscribers):
            if kind is None or kind == event.kind:
                try:
                    callback(event)
                except Exception:
                    logger.exception("event subscriber %r raised on %s event", callback, event.kind)
