"""Prefetch sizing: how many messages a dequeue may take beyond the free slots.

Prefetched messages wait, leased, for a slot. A fixed ``prefetch`` allows at
most that many waiting in all. ``prefetch="auto"`` (None here) takes only
what the queue's handlers are expected to start within a short horizon, from
how long they recently took: slow handlers get none, fast ones get round
trips that carry many rows.

A policy the fetcher calls; it imports only ``slots`` (the fetcher is not
imported here).
"""

from __future__ import annotations

from typing import Protocol

from pgqrs._worker.slots import Slots


class PacedQueue(Protocol):
    """What the policy reads of a queue (``fetcher.QueueState`` is one)."""

    limit: int
    #: Messages of this queue leased ahead, waiting for a slot.
    prefetched: int
    #: Seconds a handler of this queue takes, a running average (None: none returned yet).
    duration: float | None


class Prefetch:
    def __init__(
        self,
        slots: Slots,
        fixed: int | None,
        *,
        horizon: float = 0.0,
        per_slot: int = 0,
        duration_weight: float = 1.0,
    ) -> None:
        """``fixed``: messages fetched ahead of a free slot, at most, in all
        (None: adaptive, what each queue's handlers are expected to start
        within ``horizon`` seconds, at most ``per_slot`` per slot of the
        queue; each handler's duration weighs ``duration_weight`` in the
        queue's running average)."""
        self.slots = slots
        self.fixed = fixed
        self.horizon = horizon
        self.per_slot = per_slot
        self.duration_weight = duration_weight

    def extra(self, q: PacedQueue, free: int) -> int:
        """Messages ``q`` may fetch beyond ``free`` to wait for a slot: none
        while some of ``q``'s already wait, at most ``fixed`` in all (adaptive:
        see ``ahead``), within the held bound."""
        if q.prefetched:
            return 0
        allowed = self.ahead(q) if self.fixed is None else self.fixed
        if not allowed:
            return 0
        return max(0, min(allowed - self.slots.waiting, self.slots.held_room() - free))

    def ahead(self, q: PacedQueue) -> int:
        """Adaptive prefetch: the messages ``q``'s handlers are expected to
        start within ``horizon`` seconds. Its slots each free up once per
        handler duration (the running average), so they start about
        slots x horizon / duration messages in that time; at most
        ``per_slot`` per slot, and none before a handler has returned."""
        if q.duration is None:
            return 0
        slots = min(q.limit, self.slots.total)
        cap = self.per_slot * slots
        work = slots * self.horizon  # slot-seconds to fill
        if q.duration * cap <= work:
            return cap
        return int(work / q.duration)

    def finished(self, q: PacedQueue, seconds: float) -> None:
        """A handler of ``q`` returned after ``seconds``: update its running average."""
        if q.duration is None:
            q.duration = seconds
        else:
            q.duration += self.duration_weight * (seconds - q.duration)

    def slowed(self, q: PacedQueue, seconds: float) -> None:
        """No slot of ``q`` freed up for a prefetched message in ``seconds``:
        its handlers last at least that long (until they return faster)."""
        q.duration = max(q.duration or 0.0, seconds)
