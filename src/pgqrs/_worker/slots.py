"""Slot and permit counting: the worker's concurrency and the bound on messages held.

A leaf: it imports nothing of the worker. It only counts; who moves the
counts is fixed elsewhere:

* a dequeue under way *reserves* slots (to start what it brings at once) and
  room ahead (prefetch), and gives back what it did not use (``fetcher``);
* a held message counts in exactly one state, ``running`` (holds a slot),
  ``prefetched`` (leased ahead, waiting for a slot) or ``settling`` (its
  outcome waits to be written; no slot). Only the job table (``jobs``) moves
  a message between states, and these counts with it.

Messages held = running + prefetched + settling, and with the reservations
never more than ``total + backlog_limit``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence


@dataclasses.dataclass(eq=False, kw_only=True)
class QueueSlots:
    """One queue's share of the counts."""

    #: Most of this queue's handlers running at once.
    limit: int
    #: Slots asked for by this queue's dequeue under way.
    reserved: int = 0
    #: This queue's messages holding a slot (handlers running or about to).
    running: int = 0
    #: Slots taken: ``reserved + running`` (kept, not computed: read per job).
    used: int = 0
    #: This queue's messages leased ahead, waiting for a slot.
    prefetched: int = 0


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
        #: Room may have appeared: the fetchers look again.
        self.wake = wake
        #: Slots and room ahead reserved by dequeues under way (all queues).
        self.reserved = 0
        self.reserved_ahead = 0
        #: Held messages by state (all queues).
        self.running = 0
        self.prefetched = 0
        self.settling = 0
        # Sums read once or more per job, kept rather than computed:
        #: Slots taken: handlers running (or about to), and slots asked for
        #: by dequeues (``reserved + running``).
        self.used = 0
        #: Prefetched messages waiting for a slot, plus those a dequeue may
        #: bring for that (``reserved_ahead + prefetched``).
        self.waiting = 0

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
        self.used += slots
        q.reserved += slots
        q.used += slots
        self.reserved_ahead += ahead
        self.waiting += ahead

    def unreserve(self, q: QueueSlots, slots: int, ahead: int, *, unused: int) -> None:
        """The dequeue returned (or failed): its reservations end; the messages it
        brought are counted by state instead. ``unused``: reserved slots it did
        not fill, which wake the fetchers."""
        self.reserved -= slots
        self.used -= slots
        q.reserved -= slots
        q.used -= slots
        self.reserved_ahead -= ahead
        self.waiting -= ahead
        if unused > 0:
            self.wake()


def min_batch(limit: int, total: int, fraction: float) -> int:
    """Free slots worth a dequeue while some of the queue's handlers still run."""
    return max(1, math.ceil(min(limit, total) * fraction))
