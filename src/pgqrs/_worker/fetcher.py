"""Fetching: one dequeue per round, for the free slots, in useful batches.

Each queue has its own fetcher. A slot is a unit of the worker's concurrency
(and of the queue's own limit, if its handler has one): it is taken before
the dequeue, given back for every message the dequeue did not return, and
given back when the message's handler returns. The message then waits in the
completion backlog until its outcome is written. A dequeue asks for no more
than the room left under ``concurrency + completion_backlog`` messages held
(running, or waiting for their write), so fetching waits while the writes
lag that far behind: the worker never holds more.

A dequeue may also take messages beyond the free slots (prefetch), which
wait, leased, for a slot. With ``prefetch="auto"`` (the default) it takes
only what the queue's handlers are expected to start within a short horizon,
from how long their handlers recently took (``Slots.ahead``): slow handlers get none,
fast ones get round trips that carry many rows.

A queue with nothing running fetches as soon as a slot is free. A queue with
handlers still running waits until a fraction of its slots is free (or a slot
has waited ``fetch_delay``), so one round trip brings several messages rather
than one per finished handler. A queue is polled again at once when the last
dequeue filled every slot it asked for (more may be waiting), when a NOTIFY or
a reconnect says so, or after the poll interval.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

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
    #: Most of this queue's handlers running at once.
    limit: int
    #: Attempts after which a failure is final (the handler's, at most the queue's).
    max_attempts: int = 1
    #: Lease length asked for at dequeue (None: the queue's default).
    visibility_timeout: float | None = None
    #: Slots taken: handlers running (or about to), plus those asked for by a
    #: running dequeue.
    used: int = 0
    #: Free slots worth a dequeue while some handlers still run (see module doc).
    min_batch: int = 1
    #: The last dequeue filled every slot it asked for.
    more: bool = True
    #: A NOTIFY (or a reconnect) arrived since the last dequeue.
    notified: bool = True
    #: time.monotonic() of the next poll when nothing else prompts one.
    next_poll: float = 0.0
    #: time.monotonic() since when free slots wait for ``min_batch`` (None: not waiting).
    short_since: float | None = None
    #: Seconds a handler of this queue takes, a running average (None: none
    #: has returned yet); prefetch="auto" fetches ahead from it.
    duration: float | None = None
    #: Prefetched messages (the runtime's jobs), leased, waiting for a slot.
    ready: collections.deque[Any] = dataclasses.field(default_factory=collections.deque)
    #: Set whenever any of the above may have changed.
    attention: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.notified = True
        self.attention.set()


class Slots:
    """The worker's concurrency, shared by all its queues, and its completion backlog.

    ``used`` counts slots (handlers running or about to, and messages asked
    for by running dequeues); ``backlog`` counts messages held whose handler
    has returned (or will never start) and whose outcome is not written yet.
    Messages held = used + backlog, never more than total + backlog_limit.
    """

    def __init__(
        self,
        total: int,
        backlog_limit: int,
        queues: list[QueueState],
        batch_fraction: float,
        prefetch: int | None = 0,
        *,
        horizon: float = 0.0,
        per_slot: int = 0,
        duration_weight: float = 1.0,
    ) -> None:
        """``prefetch``: messages fetched ahead of a free slot, at most, in all
        (None: adaptive, what each queue's handlers are expected to start
        within ``horizon`` seconds, at most ``per_slot`` per slot of the
        queue; each handler's duration weighs ``duration_weight`` in the
        queue's running average)."""
        self.total = total
        self.backlog_limit = backlog_limit
        self.prefetch = prefetch
        self.horizon = horizon
        self.per_slot = per_slot
        self.duration_weight = duration_weight
        self.used = 0
        self.backlog = 0
        #: Prefetched messages waiting for a slot, plus those a running
        #: dequeue may bring for that (all queues).
        self.waiting = 0
        self.queues = queues
        for q in queues:
            q.min_batch = max(1, math.ceil(min(q.limit, total) * batch_fraction))

    def free(self, q: QueueState) -> int:
        """Messages ``q`` may fetch now to start at once: free slots, within the held bound."""
        return max(0, min(self.total - self.used, q.limit - q.used, self._held_room()))

    def extra(self, q: QueueState, free: int) -> int:
        """Messages ``q`` may fetch beyond ``free`` to wait for a slot (prefetch):
        none while some of ``q``'s already wait, at most ``prefetch`` in all
        (adaptive: what ``q``'s handlers are expected to start within
        ``horizon``, see ``ahead``), within the held bound."""
        if q.ready:
            return 0
        allowed = self.ahead(q) if self.prefetch is None else self.prefetch
        if not allowed:
            return 0
        return max(0, min(allowed - self.waiting, self._held_room() - free))

    def ahead(self, q: QueueState) -> int:
        """Adaptive prefetch: the messages ``q``'s handlers are expected to
        start within ``horizon`` seconds. Its slots each free up once per
        handler duration (the running average), so they start about
        slots x horizon / duration messages in that time; at most
        ``per_slot`` per slot, and none before a handler has returned."""
        if q.duration is None:
            return 0
        slots = min(q.limit, self.total)
        cap = self.per_slot * slots
        work = slots * self.horizon  # slot-seconds to fill
        if q.duration * cap <= work:
            return cap
        return int(work / q.duration)

    def finished(self, q: QueueState, seconds: float) -> None:
        """A handler of ``q`` returned after ``seconds``: update its running average."""
        if q.duration is None:
            q.duration = seconds
        else:
            q.duration += self.duration_weight * (seconds - q.duration)

    def slowed(self, q: QueueState, seconds: float) -> None:
        """No slot of ``q`` freed up for a prefetched message in ``seconds``:
        its handlers last at least that long (until they return faster)."""
        q.duration = max(q.duration or 0.0, seconds)

    def startable(self, q: QueueState) -> bool:
        """A slot is free for one of ``q``'s waiting messages."""
        return self.used < self.total and q.used < q.limit

    def _held_room(self) -> int:
        return self.total + self.backlog_limit - self.used - self.backlog - self.waiting

    def take(self, q: QueueState, n: int) -> None:
        self.used += n
        q.used += n

    def give(self, q: QueueState, n: int) -> None:
        """Slots back: unused by a dequeue."""
        if n <= 0:
            return
        self.used -= n
        q.used -= n
        self._wake()

    def to_backlog(self, q: QueueState) -> None:
        """A handler returned (or will never start): its slot is free, its
        message waits for its outcome to be written."""
        self.used -= 1
        q.used -= 1
        self.backlog += 1
        self._wake()

    def start_waiting(self, q: QueueState) -> None:
        """A prefetched message of ``q`` takes a slot."""
        self.waiting -= 1
        self.take(q, 1)

    def waiting_to_backlog(self) -> None:
        """A prefetched message will never start (the worker stops): it is given back."""
        self.waiting -= 1
        self.backlog += 1

    def settled(self) -> None:
        """A backlog message's outcome is written (or given up on): it is no longer held."""
        self.backlog -= 1
        if self.backlog + self.waiting >= self.backlog_limit:  # the held bound was in the way
            self._wake()

    def _wake(self) -> None:
        for other in self.queues:
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
        fetch_delay: float,
        worker_id: Callable[[], int | None],
        stopping: Callable[[], bool],
        on_fetched: Callable[[QueueState, list[Message], float, int], None],
    ) -> None:
        """``on_fetched`` is called after every dequeue that worked, with the
        leased messages (possibly none), the time.monotonic() it was sent, and
        how many of them have a slot (the others are prefetched: they wait)."""
        self._db = db
        self._q = q
        self._slots = slots
        self._batch_cap = batch_cap
        self._poll_interval = poll_interval
        self._fetch_delay = fetch_delay
        self._worker_id = worker_id
        self._stopping = stopping
        self._on_fetched = on_fetched
        self._reconnect = Reconnect()

    async def run(self) -> None:
        q = self._q
        slots = self._slots
        while not self._stopping():
            free = slots.free(q)
            extra = slots.extra(q, free)
            now = time.monotonic()
            timeout: float | None = None
            if free + extra > 0 and not q.ready:
                if not (q.more or q.notified or now >= q.next_poll):
                    timeout = max(0.0, q.next_poll - now)
                elif free + extra >= q.min_batch or q.used == 0:
                    await self._fetch(free, extra)
                    continue
                else:
                    # Handlers still running: let a few more slots free up first.
                    if q.short_since is None:
                        q.short_since = now
                    timeout = q.short_since + self._fetch_delay - now
                    if timeout <= 0:
                        await self._fetch(free, extra)
                        continue
            q.attention.clear()
            await _wait(q.attention, timeout)

    async def _fetch(self, free: int, extra: int) -> None:
        """Dequeue up to ``free`` messages to start at once and ``extra`` to wait
        for a slot (both capped by batch_cap, the slots first)."""
        q = self._q
        slots = self._slots
        free = min(free, self._batch_cap)
        extra = min(extra, self._batch_cap - free)
        n = free + extra
        q.notified = False
        q.short_since = None
        slots.take(q, free)
        slots.waiting += extra
        sent = time.monotonic()
        try:
            rows = await self._db.fetch_tuples(
                "message_dequeue",
                [q.name, n, q.visibility_timeout, self._worker_id()],
                queue=q.name,
            )
            messages, dead = dequeue_result(rows, q.name)
        except Error as exc:
            slots.waiting -= extra
            slots.give(q, free)
            wait = self._reconnect.failed()
            log = logger.warning if self._reconnect.failures == 1 else logger.debug
            log("dequeue from %r failed, polling again in %.2fs: %s", q.name, wait, exc)
            q.more = False
            q.next_poll = time.monotonic() + wait
            return
        if self._reconnect.failures and self._reconnect.succeeded():
            logger.info("dequeue from %r works again", q.name)
        started = min(len(messages), free)
        slots.waiting -= extra - (len(messages) - started)
        slots.give(q, free - started)
        if dead:
            logger.warning(
                "%d message(s) of %r had used up their attempts and went to the archive as dead",
                dead,
                q.name,
            )
        # A full batch (or one thinned by dead rows) suggests more is waiting.
        q.more = len(messages) == n or (dead > 0 and len(messages) + dead >= n)
        q.next_poll = time.monotonic() + self._poll_interval
        self._on_fetched(q, messages, sent, started)


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    """Wait for ``event``, at most ``timeout`` seconds (None: no limit).

    A timer that sets the event, rather than asyncio.wait_for, which wraps the
    wait in a task of its own each time (this runs once per fetch round).
    """
    if timeout is None:
        await event.wait()
        return
    handle = asyncio.get_running_loop().call_later(timeout, event.set)
    try:
        await event.wait()
    finally:
        handle.cancel()
