"""Lease keeping: extend the leases of handlers that run long.

A lease lasts the queue's (or handler's) visibility timeout. Once the worker
has held a message for ``extend_at`` of that (its handler still running, or
its outcome still waiting to be written), its lease is extended by a whole
timeout again, due messages together in one ``message_extend``. Local
time is only used to measure elapsed durations (monotonic clock, started just
before the statement that set the lease, so the estimate errs early); the
lease itself is always set by the database's clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from pgqrs._async import _calls as calls
from pgqrs._async._db import Database
from pgqrs._errors import Error
from pgqrs._models import Message
from pgqrs._ops import held, outcomes
from pgqrs._worker.reconnect import Reconnect

logger = logging.getLogger("pgqrs.worker")

#: Shortest pause between two checks, in seconds (very short leases).
MIN_CHECK_INTERVAL = 0.05
#: Messages tracked before ``hold`` first forgets those no longer held.
MIN_PRUNE_AT = 1024


@dataclasses.dataclass(eq=False)
class Held:
    """Messages leased for the same duration from the same moment (one dequeue)."""

    messages: list[Message]
    #: Seconds the leases last from ``since``.
    duration: float
    #: time.monotonic() just before the statement that set the leases.
    since: float


class LeaseKeeper:
    """Keeps the leases of the messages the worker holds.

    Messages are tracked by dequeue, not one by one: a message's handler
    finishing costs nothing here. ``holds(message)`` says whether the worker
    still holds that delivery; the others are forgotten at the next check.
    """

    def __init__(
        self,
        db: Database,
        *,
        extend_at: float,
        check_interval: float,
        holds: Callable[[Message], bool],
        on_extended: Callable[[list[Message]], None] = lambda messages: None,
        on_lost: Callable[[Message], None] = lambda message: None,
        on_cancelled: Callable[[list[tuple[int, Any]]], int] = lambda held: 0,
    ) -> None:
        """``holds(message)``: the worker still holds that delivery.
        ``on_extended(messages)``: their leases were just extended.
        ``on_lost(message)``: its lease had expired when the keeper came to
        extend it (the worker still held it: it may be running elsewhere).
        ``on_cancelled(held)``: ``Admin.cancel`` asked to stop these ``(id,
        lease)`` deliveries (their extension said so); returns how many the
        worker still ran."""
        self._db = db
        self._extend_at = extend_at
        self._check_interval = check_interval
        self._holds = holds
        self._on_extended = on_extended
        self._on_lost = on_lost
        self._on_cancelled = on_cancelled
        self._held: list[Held] = []
        #: Messages in ``_held`` (some perhaps no longer held), and the count
        #: at which ``hold`` prunes them: memory stays proportional to what
        #: the worker holds, at an amortized constant cost per message.
        self._tracked = 0
        self._prune_at = MIN_PRUNE_AT
        self._reconnect = Reconnect()
        self._changed = asyncio.Event()
        self._sleeping = check_interval

    def hold(self, messages: list[Message], duration: float, since: float) -> None:
        """Keep the leases of ``messages``, set for ``duration`` s at ``since``."""
        if not messages:
            return
        self._held.append(Held(messages, duration, since))
        self._tracked += len(messages)
        if self._tracked > self._prune_at:
            self._prune()
            self._prune_at = max(MIN_PRUNE_AT, 2 * self._tracked)
        if self._pause_for(duration) < self._sleeping:
            self._changed.set()  # wake up sooner than planned for this shorter lease

    def held(self) -> list[Message]:
        return [m for h in self._held for m in h.messages if self._holds(m)]

    def _prune(self) -> None:
        """Forget the messages no longer held, and the groups left empty."""
        kept: list[Held] = []
        for h in self._held:
            h.messages = [m for m in h.messages if self._holds(m)]
            if h.messages:
                kept.append(h)
        self._held = kept
        self._tracked = sum(len(h.messages) for h in kept)

    def _pause(self) -> float:
        """Seconds until the next check: often enough for the shortest lease held."""
        if not self._held:
            return self._check_interval
        return self._pause_for(min(h.duration for h in self._held))

    def _pause_for(self, duration: float) -> float:
        """Seconds between checks often enough for a lease of ``duration``."""
        return max(
            MIN_CHECK_INTERVAL, min(self._check_interval, duration * (1 - self._extend_at) / 4)
        )

    async def run(self) -> None:
        while True:
            self._prune()
            self._changed.clear()
            self._sleeping = self._pause()
            try:
                await asyncio.wait_for(self._changed.wait(), self._sleeping)
                continue  # a new lease: recompute the pause
            except asyncio.TimeoutError:
                pass
            await self.extend_due()

    async def extend_due(self) -> None:
        self._prune()
        now = time.monotonic()
        due = [h for h in self._held if now >= h.since + h.duration * self._extend_at]
        if not due:
            return
        due_ids = {id(h) for h in due}
        self._held = [h for h in self._held if id(h) not in due_ids]
        by_duration: dict[float, list[Message]] = {}
        for h in due:
            by_duration.setdefault(h.duration, []).extend(h.messages)
        failed: list[Held] = []
        for duration, group in by_duration.items():
            sent = time.monotonic()
            try:
                ids, leases = held(group)
                rows = await calls.message_extend(
                    self._db, ids=ids, leases=leases, seconds=duration
                )
            except Error as exc:
                self._reconnect.failed()
                log = logger.warning if self._reconnect.failures == 1 else logger.debug
                log("extending %d lease(s) failed, will retry: %s", len(group), exc)
                failed.extend(h for h in due if h.duration == duration)
                continue
            if self._reconnect.succeeded():
                logger.info("lease extensions work again")
            by_id = outcomes(rows)
            extended: list[Message] = []
            cancelled: list[tuple[int, Any]] = []
            for m in group:
                outcome, until = by_id.get(m.id, ("not_found", None))
                if outcome == "cancelled":  # extended, and Admin.cancel asked to stop it
                    cancelled.append((m.id, m.lease))
                if outcome in ("ok", "cancelled") and until is not None:
                    m.visible_until = until
                    extended.append(m)
                    logger.debug("extended the lease of message %s by %.1fs", m.id, duration)
                elif self._holds(m):
                    logger.warning(
                        "lost the lease of message %s (queue %r): it expired and may be "
                        "running elsewhere",
                        m.id,
                        m.queue,
                    )
                    self._on_lost(m)
            if cancelled:
                self._on_cancelled(cancelled)
            if extended:
                self._held.append(Held(extended, duration, sent))
                self._on_extended(extended)
        self._held.extend(failed)  # retried at the next check
        self._tracked = sum(len(h.messages) for h in self._held)
