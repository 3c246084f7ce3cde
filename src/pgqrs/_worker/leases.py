"""Lease keeping: extend the leases of handlers that run long.

A lease lasts the queue's (or handler's) visibility timeout. Once a handler
has held its message for ``extend_at`` of that, its lease is extended by a
whole timeout again, due messages together in one ``message_extend``. Local
time is only used to measure elapsed durations (monotonic clock, started just
before the statement that set the lease, so the estimate errs early); the
lease itself is always set by the database's clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable

from pgqrs._async._db import Database
from pgqrs._errors import Error
from pgqrs._models import Message
from pgqrs._worker.backoff import Reconnect

logger = logging.getLogger("pgqrs.worker")

#: Shortest pause between two checks, in seconds (very short leases).
MIN_CHECK_INTERVAL = 0.05


@dataclasses.dataclass(eq=False)
class Held:
    message: Message
    #: Seconds the lease lasts from ``since``.
    duration: float
    #: time.monotonic() just before the statement that set the lease.
    since: float


class LeaseKeeper:
    def __init__(
        self,
        db: Database,
        *,
        extend_at: float,
        check_interval: float,
        on_lost: Callable[[Message], None],
    ) -> None:
        self._db = db
        self._extend_at = extend_at
        self._check_interval = check_interval
        self._on_lost = on_lost
        self._held: dict[uuid.UUID, Held] = {}
        #: The lease held for each message id.
        self._current: dict[int, uuid.UUID] = {}
        self._reconnect = Reconnect()
        self._changed = asyncio.Event()
        self._sleeping = check_interval

    def hold(self, message: Message, duration: float, since: float) -> None:
        assert message.lease is not None
        older = self._current.get(message.id)
        if older is not None and older != message.lease:
            # This worker got the message again: its earlier lease is gone.
            stale = self._held.pop(older, None)
            if stale is not None:
                self._on_lost(stale.message)
        self._current[message.id] = message.lease
        self._held[message.lease] = Held(message, duration, since)
        if self._pause_for(duration) < self._sleeping:
            self._changed.set()  # wake up sooner than planned for this shorter lease

    def drop(self, message: Message) -> None:
        if (
            message.lease is not None
            and self._held.pop(message.lease, None) is not None
            and self._current.get(message.id) == message.lease
        ):
            del self._current[message.id]

    def held(self) -> list[Message]:
        return [h.message for h in self._held.values()]

    def _pause(self) -> float:
        """Seconds until the next check: often enough for the shortest lease held."""
        if not self._held:
            return self._check_interval
        return self._pause_for(min(h.duration for h in self._held.values()))

    def _pause_for(self, duration: float) -> float:
        """Seconds between checks often enough for a lease of ``duration``
        (``hold`` compares one lease's pause, not every held one's, per message)."""
        return max(
            MIN_CHECK_INTERVAL, min(self._check_interval, duration * (1 - self._extend_at) / 4)
        )

    async def run(self) -> None:
        while True:
            self._changed.clear()
            self._sleeping = self._pause()
            try:
                await asyncio.wait_for(self._changed.wait(), self._sleeping)
                continue  # a new lease: recompute the pause
            except asyncio.TimeoutError:
                pass
            await self.extend_due()

    async def extend_due(self) -> None:
        now = time.monotonic()
        due = [h for h in self._held.values() if now >= h.since + h.duration * self._extend_at]
        by_duration: dict[float, list[Held]] = {}
        for h in due:
            by_duration.setdefault(h.duration, []).append(h)
        for duration, group in by_duration.items():
            sent = time.monotonic()
            try:
                rows = await self._db.fetch(
                    "message_extend",
                    [[h.message.id for h in group], [h.message.lease for h in group], duration],
                )
            except Error as exc:
                self._reconnect.failed()
                log = logger.warning if self._reconnect.failures == 1 else logger.debug
                log("extending %d lease(s) failed, will retry: %s", len(group), exc)
                return
            if self._reconnect.succeeded():
                logger.info("lease extensions work again")
            outcome = {r["id"]: r for r in rows}
            for h in group:
                row = outcome.get(h.message.id)
                if row is not None and row["outcome"] == "ok":
                    h.since = sent
                    h.message.visible_until = row["visible_until"]
                    logger.debug(
                        "extended the lease of message %s by %.1fs", h.message.id, duration
                    )
                elif h.message.lease in self._held:
                    self.drop(h.message)
                    self._on_lost(h.message)
