"""The job table: one entry per message the worker holds, in an explicit state.

A message is held from its dequeue until its outcome is written::

    (dequeued) --> PREFETCHED --> RUNNING --> SETTLING --> (written: removed)
         \\______________________/   \\__________/^
           (a free slot: RUNNING)     (given back, never started)

* ``PREFETCHED``: leased ahead of a free slot; waits, in fetch order, for one.
* ``RUNNING``: holds a slot; its handler runs (or is about to).
* ``SETTLING``: the handler is over, or will never start (given back); the
  slot is free, the outcome waits in the completion backlog to be written.

The table is the only place that moves a message between states, and each
move adjusts the slot counts (``slots``) and the live counters
(``in_flight``, ``running``): no other code counts held messages. A move not
in ``MOVES`` is a bug and raises ``JobStateError``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import uuid
from collections.abc import Iterable

from pgqrs._models import Message
from pgqrs._worker.events import Counters, JobEvent
from pgqrs._worker.fetcher import QueueState
from pgqrs._worker.outcome import Decision
from pgqrs._worker.slots import Slots


class JobState(enum.Enum):
    PREFETCHED = "prefetched"
    RUNNING = "running"
    SETTLING = "settling"


#: The legal moves; None stands for "not in the table" (before the dequeue, after the write).
MOVES: frozenset[tuple[JobState | None, JobState | None]] = frozenset(
    {
        (None, JobState.PREFETCHED),
        (None, JobState.RUNNING),
        (JobState.PREFETCHED, JobState.RUNNING),
        (JobState.PREFETCHED, JobState.SETTLING),
        (JobState.RUNNING, JobState.SETTLING),
        (JobState.SETTLING, None),
    }
)


_MOVE_KEYS = frozenset((a._value_ if a else None, b._value_ if b else None) for a, b in MOVES)


class JobStateError(RuntimeError):
    """A move the job table refuses (a bug in the worker)."""


@dataclasses.dataclass(eq=False, slots=True)
class Job:
    queue: QueueState
    message: Message
    state: JobState | None = None
    #: The handler's task (RUNNING only).
    task: asyncio.Task[None] | None = None
    #: What is written: completed, failed (message_fail: retried or dead)
    #: or released (None: given back unstarted).
    kind: str | None = None
    #: The event to emit once the outcome is written (None: nobody subscribed,
    #: or it depends on what message_fail decides).
    after: JobEvent | None = None
    #: A failed attempt's decision (its error, whether the handler gave up).
    decision: Decision | None = None


class JobTable:
    def __init__(self, slots: Slots, counters: Counters) -> None:
        self._slots = slots
        self._counters = counters
        #: Messages held, by lease (unique per delivery, unlike the message id).
        self._jobs: dict[uuid.UUID, Job] = {}
        #: PREFETCHED jobs of each queue, in fetch order.
        self._ready: dict[str, collections.deque[Job]] = collections.defaultdict(collections.deque)

    def __len__(self) -> int:
        return len(self._jobs)

    def holds(self, m: Message) -> bool:
        return m.lease in self._jobs

    def by_lease(self, lease: uuid.UUID) -> Job | None:
        """The job holding the delivery with this lease (a cancel names the lease)."""
        return self._jobs.get(lease)

    def count(self, state: JobState) -> int:
        return int(getattr(self._slots, state.value))

    def in_state(self, state: JobState) -> list[Job]:
        return [j for j in self._jobs.values() if j.state is state]

    def tasks(self) -> list[asyncio.Task[None]]:
        """The handler tasks of RUNNING jobs."""
        return [j.task for j in self._jobs.values() if j.task is not None]

    def add(self, q: QueueState, m: Message, state: JobState) -> Job:
        """A dequeued message: RUNNING (it has a slot) or PREFETCHED (it waits for one)."""
        assert m.lease is not None
        if m.lease in self._jobs:
            raise JobStateError(f"message {m.id} is already held under lease {m.lease}")
        job = Job(q, m)
        self._move(job, state)
        self._jobs[m.lease] = job
        if state is JobState.PREFETCHED:
            self._ready[q.name].append(job)
        self._counters.in_flight = len(self._jobs)
        return job

    def start_waiting(self, queues: Iterable[QueueState]) -> list[Job]:
        """Move prefetched jobs onto free slots, queue by queue in the order
        given, each in fetch order; return them (RUNNING, for a task each)."""
        started: list[Job] = []
        for q in queues:
            ready = self._ready[q.name]
            while ready and self._slots.startable(q):
                job = ready.popleft()
                self._move(job, JobState.RUNNING)
                started.append(job)
        return started

    def settle(self, job: Job) -> None:
        """The handler of a RUNNING job is over (or will never start): its slot
        is free, the message now waits for its outcome to be written.
        (A PREFETCHED job leaves through ``give_back_waiting``.)"""
        if job.state is not JobState.RUNNING:
            raise JobStateError(
                f"message {job.message.id}: only a running job settles here, not a "
                f"{job.state.value if job.state else 'not held'} one"
            )
        self._move(job, JobState.SETTLING)
        job.task = None

    def give_back_waiting(
        self, q: QueueState | None = None, among: Iterable[Job] | None = None
    ) -> list[Job]:
        """Take PREFETCHED jobs (of ``q``, or of every queue; only those
        ``among``, if given) off their wait for a slot: they are SETTLING now,
        to be released. Returns them."""
        wanted = None if among is None else {id(j) for j in among}
        taken: list[Job] = []
        for key, ready in list(self._ready.items()):
            if q is not None and key != q.name:
                continue
            keep: collections.deque[Job] = collections.deque()
            for job in ready:
                (taken if wanted is None or id(job) in wanted else keep).append(job)
            self._ready[key] = keep
        for job in taken:
            self._move(job, JobState.SETTLING)
        return taken

    def remove(self, m: Message) -> Job | None:
        """The outcome of ``m`` is written (or given up on): it is no longer held.
        None if it was not (already) held."""
        assert m.lease is not None
        job = self._jobs.get(m.lease)
        if job is None:
            return None
        self._move(job, None)
        del self._jobs[m.lease]
        self._counters.in_flight = len(self._jobs)
        return job

    def _move(self, job: Job, state: JobState | None) -> None:
        """The one place a held message changes state, and the slot counts with it.

        Wakes the fetchers when a slot frees up, and when a written outcome
        frees room while the held bound was in the way. (Several moves per
        job: written out, keyed by the members' plain ``_value_`` strings; an
        enum member's ``.value`` and hash are Python-level calls.)
        """
        before = job.state._value_ if job.state is not None else None
        after = state._value_ if state is not None else None
        if (before, after) not in _MOVE_KEYS:
            raise JobStateError(
                f"message {job.message.id} (queue {job.queue.name!r}) cannot go from "
                f"{before or 'not held'} to {after or 'not held'}"
            )
        slots, q = self._slots, job.queue
        if before == "running":
            slots.running -= 1
            slots.used -= 1
            q.running -= 1
            q.used -= 1
        elif before == "prefetched":
            slots.prefetched -= 1
            slots.waiting -= 1
            q.prefetched -= 1
        elif before == "settling":
            slots.settling -= 1
        if after == "running":
            slots.running += 1
            slots.used += 1
            q.running += 1
            q.used += 1
        elif after == "prefetched":
            slots.prefetched += 1
            slots.waiting += 1
            q.prefetched += 1
        elif after == "settling":
            slots.settling += 1
        job.state = state
        self._counters.running = slots.running
        if before == "running" or (
            after is None and slots.settling + slots.waiting >= slots.backlog_limit
        ):
            slots.wake()
