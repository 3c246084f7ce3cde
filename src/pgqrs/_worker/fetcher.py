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
from how long their handlers recently took (``prefetch``): slow handlers get none,
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
import dataclasses
import logging
import time
from collections.abc import Callable

from pgqrs._async import _calls as calls
from pgqrs._async._db import Database
from pgqrs._async.consumer import bury_undecodable
from pgqrs._errors import Error, queue_not_found
from pgqrs._models import Message
from pgqrs._worker.prefetch import Prefetch
from pgqrs._worker.reconnect import Reconnect
from pgqrs._worker.slots import QueueSlots, Slots

logger = logging.getLogger("pgqrs.worker")


@dataclasses.dataclass(eq=False, kw_only=True)
class QueueState(QueueSlots):
    """One served queue: its effective limits and fetch state (its slot counts
    come from ``QueueSlots``: ``limit``, ``used``, ``prefetched``)."""

    name: str
    #: Attempts after which a failure is final (the handler's, at most the queue's).
    max_attempts: int = 1
    #: The handler's (or worker's) max_attempts when lower than the queue's:
    #: the worker archives a failure as dead at that attempt itself. None: the
    #: queue's limit, which message_fail applies.
    own_max_attempts: int | None = None
    #: Lease length asked for at dequeue (None: the queue's default).
    visibility_timeout: float | None = None
    #: Free slots worth a dequeue while some handlers still run (see module doc).
    min_batch: int = 1
    #: The last dequeue filled every slot it asked for.
    more: bool = True
    #: A NOTIFY (or a reconnect) arrived since the last dequeue.
    notified: bool = True
    #: Messages the last dequeue returned (None: no dequeue yet).
    found: int | None = None
    #: time.monotonic() of the next poll when nothing else prompts one.
    next_poll: float = 0.0
    #: time.monotonic() before which the queue's rate limit has no token
    #: (the dequeue said so): no dequeue before then, NOTIFY or not.
    throttled_until: float = 0.0
    #: time.monotonic() since when free slots wait for ``min_batch`` (None: not waiting).
    short_since: float | None = None
    #: Seconds a handler of this queue takes, a running average (None: none
    #: has returned yet); prefetch="auto" fetches ahead from it.
    duration: float | None = None
    #: Set whenever any of the above may have changed.
    attention: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.notified = True
        self.attention.set()


async def fetch_queue(
    db: Database,
    name: str,
    *,
    limit: int,
    max_attempts: int | None,
    visibility_timeout: float | None,
    min_batch: int,
) -> QueueState:
    """A served queue's state; ``QueueNotFound`` if it does not exist.
    ``max_attempts`` (the handler's or worker's) can only lower the queue's,
    which is enforced at dequeue."""
    info = await calls.queue_get(db, name=name)
    if info is None:
        raise queue_not_found(name)
    queue_max = info.max_attempts
    own = max_attempts if max_attempts is not None and max_attempts < queue_max else None
    return QueueState(
        name=name,
        limit=limit,
        max_attempts=queue_max if own is None else own,
        own_max_attempts=own,
        visibility_timeout=visibility_timeout,
        min_batch=min_batch,
    )


class Fetcher:
    def __init__(
        self,
        db: Database,
        q: QueueState,
        slots: Slots,
        prefetch: Prefetch,
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
        self._prefetch = prefetch
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
            extra = self._prefetch.extra(q, free)
            now = time.monotonic()
            timeout: float | None = None
            if free + extra > 0 and not q.prefetched:
                if now < q.throttled_until:
                    # The rate limit gives no token before then: sleep, not poll.
                    timeout = q.throttled_until - now
                elif not (q.more or q.notified or now >= q.next_poll):
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
        slots.reserve(q, free, extra)
        sent = time.monotonic()
        try:
            dequeued = await calls.message_dequeue(
                self._db,
                queue=q.name,
                limit=n,
                visibility_timeout=q.visibility_timeout,
                worker_id=self._worker_id(),
            )
        except Exception as exc:
            # An Error (the connection, the server) is waited out; anything
            # else (a bug, a row no one foresaw) too, with its traceback: the
            # fetcher never dies of it, its reserved slots are given back.
            slots.unreserve(q, free, extra, unused=free)
            wait = self._reconnect.failed()
            log = logger.warning if self._reconnect.failures == 1 else logger.debug
            log(
                "dequeue from %r failed, polling again in %.2fs: %s",
                q.name,
                wait,
                exc,
                exc_info=not isinstance(exc, Error),
            )
            q.more = False
            q.next_poll = time.monotonic() + wait
            return
        if self._reconnect.failures and self._reconnect.succeeded():
            logger.info("dequeue from %r works again", q.name)
        messages, dead = dequeued.messages, dequeued.dead
        if dequeued.undecodable:
            # Rows that cannot be read go to the archive alone; the others run.
            await bury_undecodable(self._db, q.name, dequeued.undecodable, self._worker_id())
        started = min(len(messages), free)
        # The messages brought are counted by state from here (the job table).
        slots.unreserve(q, free, extra, unused=free - started)
        if dead:
            logger.warning(
                "%d message(s) of %r had used up their attempts and went to the archive as dead",
                dead,
                q.name,
            )
        # A full batch suggests more is waiting (message_dequeue fills its
        # batch past the rows it archives as dead).
        q.more = len(messages) == n
        q.next_poll = time.monotonic() + self._poll_interval
        if dequeued.retry_after is not None:
            # The queue's rate limit cut the batch short: the dequeue said when
            # its next token is due; until then another dequeue gets nothing.
            q.more = False
            q.throttled_until = q.next_poll = time.monotonic() + dequeued.retry_after
        q.found = len(messages)
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
