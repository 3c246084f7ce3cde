"""Slot and permit counting: the worker's concurrency and the bound on messages held.

A leaf: it imports nothing of the worker. It only counts; who moves the
counts is fixed elsewhere:

* a dequeue under way *reserves* slots (to start what it brings at once) and
  room ahead (prefetch), and gives back what it did not use (``fetcher``);
* a held message counts in exactly one state, ``running`` (holds a slot),
  ``prefetched`` (leased ahead, waiting for a slot) or ``settling`` (its
  outcome waits to be written; no slot). Only the job table (``jobs``) moves
  a message between states, through ``move``.

Messages held = running + prefetched + settling, and with the reservations
never more than ``total + backlog_limit``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

#: The states a held message counts in (the values of ``jobs.JobState``).
HELD_STATES = ("running", "prefetched", "settling")


@dataclasses.dataclass(eq=False, kw_only=True)
class QueueSlots:
    """One queue's share of the counts."""

    #: Most of this queue's handlers running at once.
    limit: int
    #: Slots asked for by this queue's dequeue under way.
    reserved: int = 0
    #: This queue's messages holding a slot (handlers running or about to).
    running: int = 0
    #: This queue's messages leased ahead, waiting for a slot.
    prefetched: int = 0

    @property
    def used(self) -> int:
        """Slots taken: handlers running (or about to), plus those a dequeue asked for."""
        return self.reserved + self.running


class Slots:
    """The worker's concurrency, shared by all its queues, and its completion backlog."""

    def __init__(
        self,
        total: int,
        backlog_limit: int,
        queues: Sequence[QueueSlots],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        """``wake()`` is called when room may have appeared (fetchers look again)."""
        self.total = total
        self.backlog_limit = backlog_limit
        self.queues = list(queues)
        self._wake = wake
        #: Slots and room ahead reserved by dequeues under way (all queues).
        self.reserved = 0
        self.reserved_ahead = 0
        #: Held messages by state (all queues).
        self.running = 0
        self.prefetched = 0
        self.settling = 0

    @property
    def used(self) -> int:
        """Slots taken: handlers running (or about to), and slots asked for by dequeues."""
        return self.reserved + self.running

    @property
    def waiting(self) -> int:
        """Prefetched messages waiting for a slot, plus those a dequeue may bring for that."""
        return self.reserved_ahead + self.prefetched

    @property
    def backlog(self) -> int:
        """Messages whose handler is over (or will never start), outcome not yet written."""
        return self.settling

    @property
    def held(self) -> int:
        return self.running + self.prefetched + self.settling

    def held_room(self) -> int:
        """Messages that may still be taken under the held bound."""
        return self.total + self.backlog_limit - self.used - self.backlog - self.waiting

    def free(self, q: QueueSlots) -> int:
        """Messages ``q`` may fetch now to start at once: free slots, within the held bound."""
        return max(0, min(self.total - self.used, q.limit - q.used, self.held_room()))

    def startable(self, q: QueueSlots) -> bool:
        """A slot is free for one of ``q``'s waiting messages."""
        return self.used < self.total and q.used < q.limit

    def reserve(self, q: QueueSlots, slots: int, ahead: int) -> None:
        """A dequeue of ``q`` is sent for ``slots`` messages to start and ``ahead`` to wait."""
        self.reserved += slots
        q.reserved += slots
        self.reserved_ahead += ahead

    def unreserve(self, q: QueueSlots, slots: int, ahead: int, *, unused: int) -> None:
        """The dequeue returned (or failed): its reservations end; the messages it
        brought are counted by state instead. ``unused``: reserved slots it did
        not fill, which wake the fetchers."""
        self.reserved -= slots
        q.reserved -= slots
        self.reserved_ahead -= ahead
        if unused > 0:
            self._wake()

    def move(self, q: QueueSlots, leaving: str | None, entering: str | None) -> None:
        """A held message of ``q`` changes state (None: it was not held / is no longer).

        Wakes the fetchers when a slot frees up, and when a settled message
        frees room while the held bound was in the way.
        """
        if leaving is not None:
            self._count(q, leaving, -1)
        if entering is not None:
            self._count(q, entering, 1)
        if leaving == "running" or (
            entering is None and self.backlog + self.waiting >= self.backlog_limit
        ):
            self._wake()

    def _count(self, q: QueueSlots, state: str, n: int) -> None:
        if state == "running":
            self.running += n
            q.running += n
        elif state == "prefetched":
            self.prefetched += n
            q.prefetched += n
        elif state == "settling":
            self.settling += n
        else:
            raise ValueError(f"unknown held state {state!r}: expected one of {HELD_STATES}")


def min_batch(limit: int, total: int, fraction: float) -> int:
    """Free slots worth a dequeue while some of the queue's handlers still run."""
    return max(1, math.ceil(min(limit, total) * fraction))
