"""Fetching: one dequeue per round, for as many messages as there are free slots.

Each queue has its own fetcher. A slot is a unit of the worker's concurrency
(and of the queue's own limit, if its handler has one); slots are taken before
the dequeue and given back for every message it did not return, so the worker
never holds more messages than its concurrency. A queue is polled again at
once when the last dequeue filled every slot it asked for (more may be
waiting), when a NOTIFY or a reconnect says so, or after the poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

from pgqrs._async._db import Database
from pgqrs._errors import Error
from pgqrs._models import Message
from pgqrs._ops import dequeue_result
from pgqrs._worker.backoff import Reconnect
from pgqrs._worker.handlers import HandlerSpec

logger = logging.getLogger("pgqrs.worker")


@dataclasses.dataclass(eq=False)
class QueueState:
    """One served queue: its handler, effective limits and fetch state."""

    name: str
    spec: HandlerSpec
    #: Most of this queue's messages held at once.
    limit: int
    #: Attempts after which a failure is final (the handler's, at most the queue's).
    max_attempts: int = 1
    #: Lease length asked for at dequeue (None: the queue's default).
    visibility_timeout: float | None = None
    #: Slots taken: messages held, plus those asked for by a running dequeue.
    used: int = 0
    #: The last dequeue filled every slot it asked for.
    more: bool = True
    #: A NOTIFY (or a reconnect) arrived since the last dequeue.
    notified: bool = True
    #: time.monotonic() of the next poll when nothing else prompts one.
    next_poll: float = 0.0
    #: Set whenever any of the above may have changed.
    attention: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.notified = True
        self.attention.set()


class Slots:
    """The worker's concurrency, shared by all its queues."""

    def __init__(self, total: int, queues: list[QueueState]) -> None:
        self.total = total
        self.used = 0
        self._queues = queues

    def free(self, q: QueueState) -> int:
        return max(0, min(self.total - self.used, q.limit - q.used))

    def take(self, q: QueueState, n: int) -> None:
        self.used += n
        q.used += n

    def give(self, q: QueueState, n: int) -> None:
        if n <= 0:
            return
        self.used -= n
        q.used -= n
        for other in self._queues:
            other.attention.set()


class Fetcher:
    def __init__(
        self,
        db: Database,
        q: QueueState,
        slots: Slots,
        *,
        batch_cap: int,
        poll_interval: float,
        worker_id: Callable[[], int | None],
        stopping: Callable[[], bool],
        on_fetched: Callable[[QueueState, list[Message], float], None],
    ) -> None:
        self._db = db
        self._q = q
        self._slots = slots
        self._batch_cap = batch_cap
        self._poll_interval = poll_interval
        self._worker_id = worker_id
        self._stopping = stopping
        self._on_fetched = on_fetched
        self._reconnect = Reconnect()

    async def run(self) -> None:
        q = self._q
        while not self._stopping():
            free = self._slots.free(q)
            if free > 0 and (q.more or q.notified or time.monotonic() >= q.next_poll):
                await self._fetch(min(free, self._batch_cap))
                continue
            timeout = None if free == 0 else max(0.0, q.next_poll - time.monotonic())
            q.attention.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(q.attention.wait(), timeout)

    async def _fetch(self, n: int) -> None:
        q = self._q
        q.notified = False
        self._slots.take(q, n)
        sent = time.monotonic()
        try:
            rows = await self._db.fetch(
                "message_dequeue",
                [q.name, n, q.visibility_timeout, self._worker_id()],
                queue=q.name,
            )
            messages, dead = dequeue_result(rows, q.name)
        except Error as exc:
            self._slots.give(q, n)
            wait = self._reconnect.failed()
            log = logger.warning if self._reconnect.failures == 1 else logger.debug
            log("dequeue from %r failed, polling again in %.2fs: %s", q.name, wait, exc)
            q.more = False
            q.next_poll = time.monotonic() + wait
            return
        if self._reconnect.succeeded():
            logger.info("dequeue from %r works again", q.name)
        self._slots.give(q, n - len(messages))
        if dead:
            logger.warning(
                "%d message(s) of %r had used up their attempts and went to the archive as dead",
                dead,
                q.name,
            )
        # A full batch (or one thinned by dead rows) suggests more is waiting.
        q.more = len(messages) == n or (dead > 0 and len(messages) + dead >= n)
        q.next_poll = time.monotonic() + self._poll_interval
        if messages:
            self._on_fetched(q, messages, sent)
