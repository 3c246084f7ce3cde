"""The values pgqrs hands back: messages, queues, statistics, reports."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Any


@dataclasses.dataclass(slots=True)
class Message:
    """One job. ``payload`` is the decoded JSON value.

    A dequeued message carries its ``lease``: the token that fences every later
    archive, delete, extend or release to the consumer holding it, until
    ``visible_until``.
    """

    id: int
    queue: str
    payload: Any
    priority: int
    attempts: int
    enqueued_at: datetime.datetime
    dequeued_at: datetime.datetime | None
    visible_until: datetime.datetime
    headers: dict[str, Any]
    lease: uuid.UUID | None = None
    dedup_key: str | None = None
    last_error: Any = None
    #: False when enqueue found a waiting message with the same dedup key and
    #: returned it instead of adding a new one.
    inserted: bool = True
    #: The message's group (flow control, docs/flow-control.md); None: no group.
    group: str | None = None
    #: What the running handler last recorded with ``set_progress`` (peek shows it).
    progress: Any = None
    #: Set by the worker when a cancellation of this message was requested
    #: (read it through ``cancelled``).
    _cancel_requested: bool = dataclasses.field(default=False, repr=False, compare=False)
    #: The client that handed the message out and can act on it (set_progress,
    #: wait): a worker, Consumer or Producer. None for a message from peek.
    _owner: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """True once the worker learned that this message was cancelled
        (``Admin.cancel``) while its handler runs: a ``def`` handler should stop
        soon; what it returns is ignored and the message is archived as
        ``cancelled``. (An ``async def`` handler's task is cancelled instead.)"""
        return self._cancel_requested

    def set_progress(self, progress: Any) -> Any:
        """Record ``progress`` (a JSON value) on the message row, fenced by the
        lease: ``LeaseExpired`` when it was lost. Peek, the dashboard and, once
        archived, the archive show it. Returns whether a cancellation was
        requested (True: stop). In ``pgqrs.aio`` and in an ``async def``
        handler it returns an awaitable: ``await msg.set_progress({...})``."""
        return self._need_owner("set_progress", "_message_set_progress")(self, progress)

    def wait(self, timeout: float | None = None) -> Any:
        """Wait until the message is archived and return its ``ArchivedMessage``
        (as ``Admin.wait``); ``WaitTimeout`` after ``timeout`` seconds. For the
        message ``enqueue`` returned. In ``pgqrs.aio`` it returns an awaitable."""
        return self._need_owner("wait", "_message_wait")(self.id, timeout)

    def _need_owner(self, what: str, method: str) -> Any:
        """The owner's ``method``: a Producer's message can wait, a leased one
        (Consumer, worker) can record progress; anything else is refused."""
        found = getattr(self._owner, method, None)
        if found is None:
            from pgqrs._errors import InvalidArgument

            source = {"wait": "enqueue", "set_progress": "a Consumer's dequeue or a worker"}[what]
            raise InvalidArgument(
                f"message {self.id} cannot {what}: only a message from {source} can "
                "(a peeked message is a copy); use Admin.wait / Consumer.set_progress"
            )
        return found

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
        return cls(
            id=row["id"],
            queue=row["queue"],
            payload=row["payload"],
            priority=row["priority"],
            attempts=row["attempts"],
            enqueued_at=row["enqueued_at"],
            dequeued_at=row["dequeued_at"],
            visible_until=row["visible_until"],
            headers=row["headers"] or {},
            lease=row["lease"],
            dedup_key=row["dedup_key"],
            last_error=row["last_error"],
            inserted=row.get("inserted", True),
            group=row.get("group_key"),
            progress=row.get("progress"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` dequeues per ``period`` seconds, across every consumer
    and worker (a token bucket in the database: bursts up to ``count``, then
    ``count / period`` per second). ``per_group``: one bucket per message group.

    Build one directly, or parse ``"100/s"`` (also ``/m``, ``/h``) with
    :meth:`parse`; every API that takes a rate limit accepts either.
    """

    count: int
    period: float = 1.0
    per_group: bool = False

    def __post_init__(self) -> None:
        from pgqrs._validate import check_rate_limit

        check_rate_limit(self.count, self.period, self.per_group)

    @classmethod
    def parse(cls, text: str, *, per_group: bool = False) -> RateLimit:
        """``"100/s"``, ``"600/m"``, ``"5000/h"`` (or ``"10/2s"``: 10 every 2 seconds)."""
        from pgqrs._validate import parse_rate_limit

        count, period = parse_rate_limit(text)
        return cls(count, period, per_group)

    def __str__(self) -> str:
        units = {1.0: "s", 60.0: "m", 3600.0: "h"}
        per = units.get(self.period, f"{self.period:g}s")
        return f"{self.count}/{per}" + (" per group" if self.per_group else "")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RateLimit | None:
        if row.get("rate_count") is None:
            return None
        return cls(row["rate_count"], row["rate_period"], bool(row["rate_per_group"]))


@dataclasses.dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    visibility_timeout: float
    max_attempts: int
    paused: bool
    created_at: datetime.datetime
    #: Flow control (docs/flow-control.md); None: no limit.
    concurrency_limit: int | None = None
    group_concurrency: int | None = None
    rate_limit: RateLimit | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> QueueInfo:
        return cls(
            name=row["name"],
            visibility_timeout=row["visibility_timeout"],
            max_attempts=row["max_attempts"],
            paused=row["paused"],
            created_at=row["created_at"],
            concurrency_limit=row.get("concurrency_limit"),
            group_concurrency=row.get("group_concurrency"),
            rate_limit=RateLimit.from_row(row),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule (docs/schedules.md): what it enqueues, when, and where it stands."""

    name: str
    queue: str
    payload: Any
    headers: dict[str, Any]
    priority: int
    #: The cron expression as given (None for an interval schedule).
    cron: str | None
    #: Seconds between slots (None for a cron schedule).
    interval: int | None
    time_zone: str
    #: What happens to slots missed while no worker ran: "skip" or "latest".
    missed: str
    paused: bool
    #: The next slot to fire (None: not planned yet; a worker plans it at its next tick).
    next_slot: datetime.datetime | None
    #: The newest slot fired, and when.
    last_slot: datetime.datetime | None
    last_fired_at: datetime.datetime | None
    created_at: datetime.datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScheduleInfo:
        return cls(
            name=row["name"],
            queue=row["queue"],
            payload=row["payload"],
            headers=row["headers"],
            priority=row["priority"],
            cron=row["cron"],
            interval=row["interval_seconds"],
            time_zone=row["time_zone"],
            missed=row["missed"],
            paused=row["paused"],
            next_slot=row["next_slot"],
            last_slot=row["last_slot"],
            last_fired_at=row["last_fired_at"],
            created_at=row["created_at"],
        )


@dataclasses.dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    paused: bool
    #: Visible now: waiting, or leased once and expired.
    ready: int
    #: Leased and not yet expired.
    in_flight: int
    #: Waiting for their delay (or a retry backoff) to pass.
    delayed: int
    #: Archived messages by status, e.g. {"completed": 10, "dead": 1}.
    archived: dict[str, int]
    #: Seconds since the oldest ready message was enqueued; None when none is ready.
    oldest_ready_age: float | None
    #: The backend whose open snapshot is oldest (it holds back vacuum of dead
    #: message rows), and how long its transaction has been open, in seconds.
    oldest_xmin_pid: int | None
    oldest_xmin_age: float | None
    #: Flow control (docs/flow-control.md); None: no limit.
    concurrency_limit: int | None = None
    group_concurrency: int | None = None
    rate_limit: RateLimit | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> QueueStats:
        return cls(
            queue=row["name"],
            paused=row["paused"],
            ready=row["ready"],
            in_flight=row["in_flight"],
            delayed=row["delayed"],
            archived={k: int(v) for k, v in (row["archived"] or {}).items()},
            oldest_ready_age=row["oldest_ready_age"],
            oldest_xmin_pid=row["oldest_xmin_pid"],
            oldest_xmin_age=row["oldest_xmin_age"],
            concurrency_limit=row.get("concurrency_limit"),
            group_concurrency=row.get("group_concurrency"),
            rate_limit=RateLimit.from_row(row),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ArchivedMessage:
    id: int
    queue: str
    payload: Any
    priority: int
    attempts: int
    enqueued_at: datetime.datetime
    dequeued_at: datetime.datetime | None
    dedup_key: str | None
    headers: dict[str, Any]
    archived_at: datetime.datetime
    status: str
    result: Any
    error: Any
    #: The progress the handler last recorded (None: none).
    progress: Any = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ArchivedMessage:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row})


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: int
    hostname: str
    pid: int
    queues: list[str]
    started_at: datetime.datetime
    heartbeat_at: datetime.datetime
    stopped_at: datetime.datetime | None
    status: str
    #: Messages this worker holds leased right now.
    leased: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkerInfo:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``Admin.verify()`` found: is the schema there, complete and unmodified?"""

    schema: str
    installed: bool
    #: Highest migration version applied (0 when not installed).
    current_version: int
    #: Highest migration version this library ships.
    latest_version: int
    #: Migrations (``NNNN_name``) this library ships that the database has not
    #: applied, and functions (``function name``) it lacks or never recorded.
    missing: list[str]
    #: Applied migrations, and recorded functions, whose checksum differs from
    #: the shipped file.
    modified: list[str]
    #: Applied migrations and recorded functions this library does not know (a
    #: newer pgqrs installed them).
    unknown: list[str]

    @property
    def ok(self) -> bool:
        return self.installed and not self.missing and not self.modified and not self.unknown

    def describe(self) -> str:
        if not self.installed:
            return (
                f"schema {self.schema!r} is not installed: run Admin.install() or `pgqrs install`"
            )
        if self.ok:
            return f"schema {self.schema!r} is up to date (version {self.current_version})"
        parts = []
        if self.missing:
            parts.append(f"missing {', '.join(self.missing)} (run install)")
        if self.modified:
            parts.append(f"changed since they were applied: {', '.join(self.modified)}")
        if self.unknown:
            parts.append(f"newer than this pgqrs: {', '.join(self.unknown)}")
        return f"schema {self.schema!r}: " + "; ".join(parts)
