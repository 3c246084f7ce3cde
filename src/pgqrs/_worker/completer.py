"""Writing job outcomes: batched, fenced by lease, retried until written.

Every finished job becomes one Settlement: archive (completed), fail (a
failed attempt: ``message_fail`` retries it after the backoff or archives it
as dead, the server decides) or release (back to the queue, the worker
stopping). Settlements arriving within the flush interval share one
``message_archive``, one ``message_release`` and one ``message_fail``
statement per distinct backoff. A write that fails (connection lost, database restarting) is
retried with backoff, never dropped; each row stays fenced by its lease, so
a retry cannot touch a message another consumer has taken since.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from pgqrs._async import _calls as calls
from pgqrs._async._db import Database
from pgqrs._errors import ConnectionFailed, Error
from pgqrs._models import Message
from pgqrs._ops import FailOutcome, Failure, FencedRow, held, outcomes
from pgqrs._worker.options import Backoff
from pgqrs._worker.reconnect import Reconnect

logger = logging.getLogger("pgqrs.worker")

#: The backoff of a failed attempt that names none.
DEFAULT_BACKOFF = Backoff()

#: Times the database may refuse (not: fail to receive) one settlement's
#: statement before the worker gives up on writing it; the message then comes
#: back when its lease expires.
MAX_REFUSALS = 5

#: The outcome of one settlement: written ('ok'; for a fail, 'retried' or
#: 'dead' as message_fail decided), refused by the fence ('lease_lost'), the
#: message is gone ('not_found'), or given up on while stopping with the
#: database unreachable ('unwritten': the lease expires and the message is
#: delivered again). 'cancelled': written, but as status cancelled (a cancel
#: was requested while the message was held: message_archive and message_fail
#: archive it so).
Outcome = Literal["ok", "retried", "dead", "cancelled", "lease_lost", "not_found", "unwritten"]


#: Called once with a settlement's outcome, on the event loop, as soon as it is known.
OnDone = Callable[["Settlement", Outcome], None]


@dataclasses.dataclass(eq=False, slots=True)
class Settlement:
    message: Message
    kind: Literal["archive", "fail", "release"]
    #: Archive status ('completed').
    status: str = "completed"
    #: JSON texts (already encoded and size-checked by the caller).
    result: str | None = None
    error: str | None = None
    #: Seconds before the message is visible again: release (None: at once);
    #: fail: the delay asked for (None: the backoff), then the one message_fail used.
    delay: float | None = None
    #: Fail: archive as dead whatever the attempts left.
    dead: bool = False
    #: Fail: the backoff message_fail computes the delay with.
    backoff: Backoff | None = None
    #: Fail, once written: the deliveries made, as message_fail counted them.
    attempts: int | None = None
    #: Release: give back the attempt counted at dequeue (no handler started).
    refund: bool = False
    #: Statements including this settlement that failed so far.
    failures: int = 0
    #: Statements including this settlement sent so far (one sent before may
    #: have committed although its reply was lost).
    sent: int = 0
    #: Called with the outcome (a callback rather than a future: no extra
    #: event loop round per job).
    on_done: OnDone | None = None
    #: The outcome, once known.
    outcome: Outcome | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def resolve(self, outcome: Outcome) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        if self.on_done is not None:
            try:
                self.on_done(self, outcome)
            except Exception:  # a bug in the caller must not stop the other writes
                logger.exception("handling the outcome of message %s failed", self.message.id)


#: Writes a batch of settlements and resolves each (``database_writer`` in production).
Writer = Callable[[list["Settlement"]], Awaitable[None]]


def database_writer(db: Database) -> Writer:
    """The writer the worker uses: ``write_settlements`` on ``db``."""

    async def write(todo: list[Settlement]) -> None:
        await write_settlements(db, todo)

    return write


class Completer:
    def __init__(
        self,
        write: Writer,
        *,
        flush_interval: float,
        flush_size: int,
        idle: Callable[[], bool],
    ) -> None:
        """``idle()`` says whether no handler runs and no dequeue is under way:
        then nothing else will join the batch soon, and it is written at once.
        ``write(batch)`` writes a batch and resolves its settlements (raising
        ``pgqrs.Error`` when the statement failed)."""
        self._write_batch = write
        self._flush_interval = flush_interval
        self._flush_size = flush_size
        self._idle = idle
        self._pending: list[Settlement] = []
        self._has_work = asyncio.Event()
        self._urgent = asyncio.Event()
        self._closing = False
        self._hurrying = False
        self._deadline: float | None = None
        self._reconnect = Reconnect()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, settlement: Settlement) -> None:
        """Queue ``settlement``; its ``on_done`` is called once it is written."""
        self._pending.append(settlement)
        self._has_work.set()
        if len(self._pending) >= self._flush_size:
            self._urgent.set()

    def nudge(self) -> None:
        """The worker went idle: write what is pending without waiting."""
        if self._pending:
            self._urgent.set()

    def hurry(self, deadline: float) -> None:
        """Stopping: write without waiting for the flush interval, and give up
        retrying failed writes at ``deadline`` (time.monotonic())."""
        self._hurrying = True
        self._deadline = deadline if self._deadline is None else min(deadline, self._deadline)
        self._has_work.set()
        self._urgent.set()

    def finish(self) -> None:
        """Nothing more will be submitted: ``run()`` returns once all is written."""
        self._closing = True
        self._has_work.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._has_work.wait()
            if not self._pending:
                if self._closing:
                    return
                self._has_work.clear()
                continue
            if not self._urgent.is_set() and not self._hurrying and not self._idle():
                # Wait for company: more outcomes within the flush interval.
                timer = loop.call_later(self._flush_interval, self._urgent.set)
                try:
                    await self._urgent.wait()
                finally:
                    timer.cancel()
            batch = self._take()
            if len(self._pending) < self._flush_size and not self._hurrying:
                self._urgent.clear()
            await self._write(batch)

    def _take(self) -> list[Settlement]:
        """Up to flush_size pending settlements, at most one per message: one
        statement must not name a message twice (a repeat, from a redelivery to
        this same worker, waits for the next batch)."""
        batch: list[Settlement] = []
        rest: list[Settlement] = []
        seen: set[int] = set()
        for s in self._pending:
            if len(batch) < self._flush_size and s.message.id not in seen:
                seen.add(s.message.id)
                batch.append(s)
            else:
                rest.append(s)
        self._pending = rest
        return batch

    async def _write(self, batch: list[Settlement]) -> None:
        """Write ``batch``; retry connection failures until written (or the
        shutdown deadline). A statement the database refuses is retried one
        settlement at a time, so one bad row cannot hold up the others."""
        groups = [batch]
        while groups:
            todo = [s for s in groups[0] if not s.done]
            if not todo:
                groups.pop(0)
                continue
            try:
                await self._write_batch(todo)
            except Error as exc:
                for s in todo:
                    s.failures += 1
                refused = not isinstance(exc, ConnectionFailed)
                if refused and len(todo) > 1:
                    logger.warning(
                        "writing %d job outcomes failed (%s); retrying them one by one",
                        len(todo),
                        exc,
                    )
                    groups[0:1] = [[s] for s in todo]
                    continue
                if refused and todo[0].failures >= MAX_REFUSALS:
                    self._give_up(todo, f"refused {MAX_REFUSALS} times: {exc}")
                    groups.pop(0)
                    continue
                wait = self._reconnect.failed()
                if self._deadline is not None and time.monotonic() + wait > self._deadline:
                    self._give_up([s for g in groups for s in g], f"stopping: {exc}")
                    return
                log = logger.warning if self._reconnect.failures == 1 else logger.debug
                log("writing %d job outcome(s) failed, retrying in %.2fs: %s", len(todo), wait, exc)
                await asyncio.sleep(wait)
            else:
                if self._reconnect.succeeded():
                    logger.info("job outcomes written again after a database error")
                groups.pop(0)

    def _give_up(self, settlements: list[Settlement], why: str) -> None:
        ids = [s.message.id for s in settlements if not s.done]
        if ids:
            logger.error(
                "could not write the outcome of message(s) %s (%s); they will be delivered "
                "again when their leases expire",
                ids,
                why,
            )
        for s in settlements:
            s.resolve("unwritten")


def _resolve(settlements: list[Settlement], rows: list[FencedRow], ambiguous: str) -> None:
    """Set each settlement's outcome. After a statement whose commit may have
    gone through, the ``ambiguous`` outcome means our own earlier write landed."""
    by_id = outcomes(rows)
    for s in settlements:
        outcome = by_id.get(s.message.id, ("not_found", None))[0]
        if s.sent > 1 and outcome == ambiguous:
            logger.debug(
                "message %s: %s on retry, taken as written by the earlier attempt",
                s.message.id,
                outcome,
            )
            outcome = "ok"
        s.resolve(outcome)  # type: ignore[arg-type]


def _resolve_failed(settlements: list[Settlement], results: list[FailOutcome]) -> None:
    """Set each failed attempt's outcome from message_fail's (in input order).

    After a statement whose commit may have gone through, our own earlier
    write shows as 'lease_lost' (retried: the row is back without a lease) or
    'not_found' (dead: the row is in the archive).
    """
    for s, result in zip(settlements, results, strict=True):
        outcome = result.outcome
        if outcome == "cancelled":
            pass
        elif outcome in ("retried", "dead"):
            s.delay = result.delay
            s.attempts = result.attempts
        elif s.sent > 1:
            logger.debug(
                "message %s: %s on retry, taken as written by the earlier attempt",
                s.message.id,
                outcome,
            )
            outcome = "retried" if outcome == "lease_lost" else "dead"
        s.resolve(outcome)  # type: ignore[arg-type]


def fail_groups(todo: list[Settlement]) -> dict[Backoff, list[Settlement]]:
    """The failed attempts among ``todo``, by backoff: one message_fail each."""
    groups: dict[Backoff, list[Settlement]] = {}
    for s in todo:
        if s.kind == "fail":
            groups.setdefault(s.backoff or DEFAULT_BACKOFF, []).append(s)
    return groups


def _sending(settlements: list[Settlement]) -> list[Settlement]:
    for s in settlements:
        s.sent += 1
    return settlements


async def write_settlements(db: Database, todo: list[Settlement]) -> None:
    """One ``message_archive``, one ``message_release`` and one ``message_fail``
    per distinct backoff, for ``todo``; each resolves its settlements as soon
    as it returns (a later statement failing leaves them written)."""
    archives = _sending([s for s in todo if s.kind == "archive"])
    if archives:
        ids, leases = held([s.message for s in archives])
        rows = await calls.message_archive(
            db,
            ids=ids,
            leases=leases,
            statuses=[s.status for s in archives],
            results=[s.result for s in archives],
            errors=[s.error for s in archives],
        )
        _resolve(archives, rows, ambiguous="not_found")
    for backoff, group in fail_groups(todo).items():
        results = await calls.message_fail(
            db,
            failures=[Failure(s.message, s.error, s.delay, s.dead) for s in _sending(group)],
            backoff_base=backoff.base,
            backoff_max=backoff.max,
            backoff_jitter=backoff.jitter,
        )
        _resolve_failed(group, results)
    releases = _sending([s for s in todo if s.kind == "release"])
    if releases:
        ids, leases = held([s.message for s in releases])
        rows = await calls.message_release(
            db,
            ids=ids,
            leases=leases,
            delays=[s.delay or 0.0 for s in releases],
            errors=[s.error for s in releases],
            refunds=[s.refund for s in releases],
        )
        _resolve(releases, rows, ambiguous="lease_lost")
