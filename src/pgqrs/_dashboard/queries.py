"""What the dashboard reads and changes, each as one bounded statement.

The statements live in ``sql/`` next to this file (rendered for the schema as
pgqrs's own named queries are); each calls one server function
``dashboard_<name>`` (``sql/functions/``), so a role needs only EXECUTE on
them (``grant --read-only`` for the pages, ``--admin`` for the actions), never
a table privilege. Every one is an index range with a row bound:
a page costs the same on a queue of ten messages and on one of ten million.
Where an exact count would walk a whole queue, the planner's estimate is
shown instead, marked as one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgqrs._async._db import make_pool
from pgqrs._config import Config
from pgqrs._errors import translate
from pgqrs._models import RateLimit
from pgqrs._sql import queries as pgqrs_queries
from pgqrs._sql import render

Row = dict[str, Any]

#: A queue with at most this many messages is counted exactly (by reading
#: them); a bigger one gets the planner's estimates.
EXACT_COUNT_LIMIT = 5_000
#: Rows read at most per chart series (per status, and for enqueued).
SERIES_ROW_LIMIT = 20_000
#: Messages looked up at most per table to estimate a busy window's enqueued series.
SERIES_SAMPLE_LIMIT = 5_000
#: Rows of a queue's index read at most for one page of its messages.
SCAN_LIMIT = 2_000
#: Rows at the front of each queue looked at for what the workers are running.
RUNNING_SCAN_LIMIT = 2_000
#: Messages and archived messages per page.
PAGE_SIZE = 50
#: Workers listed at most.
WORKER_LIMIT = 200
#: Schedules listed on their page (by name).
SCHEDULE_LIMIT = 500
#: The window, in seconds, of the queues page's per-minute rates.
RATE_WINDOW = 300.0
#: Message states of the waiting table, as the filter accepts them.
STATES = ("ready", "in_flight", "delayed")


@functools.cache
def _texts() -> dict[str, str]:
    folder = Path(__file__).with_name("sql")
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.sql"))}


@functools.cache
def statements(schema: str) -> dict[str, str]:
    """The dashboard's statements rendered for ``schema``."""
    return {name: render(text, schema) for name, text in _texts().items()}


@dataclasses.dataclass(frozen=True)
class Count:
    """A count shown on a page: exact, or the planner's estimate."""

    value: int
    exact: bool = True


@dataclasses.dataclass
class QueueRow:
    name: str
    paused: bool
    #: Every column of the queue's row (limits included), by name.
    settings: dict[str, Any]
    ready: Count
    in_flight: Count
    delayed: Count
    dead: Count
    archived: Count
    completed_per_minute: float
    failed_per_minute: float
    oldest_ready_age: float | None


@dataclasses.dataclass
class Series:
    """Per-minute counts of one chart series, and whether a bound cut it."""

    name: str
    #: Count per minute, keyed by the minute's Unix time in seconds.
    points: dict[int, int]
    #: True when a bound cut the series to its newest rows.
    cut: bool = False
    #: 1 when every message was counted, else one in ``sampled`` was (each
    #: counting for ``sampled``): an estimate.
    sampled: int = 1

    @property
    def total(self) -> int:
        return sum(self.points.values())


@dataclasses.dataclass
class MessagePage:
    rows: list[Row]
    #: Keyset (priority, id) of the next page, or None at the end.
    next_key: tuple[int, int] | None
    #: True when the next key continues a filtered scan that found too few rows.
    scan_continues: bool


class Data:
    """The dashboard's database access: a small pool of its own (or a shared one)."""

    def __init__(self, config: Config, pool: AsyncConnectionPool | None = None) -> None:
        self.config = config
        self.sql = statements(config.schema)
        self.pgqrs_sql = pgqrs_queries(config.schema)
        self._owns_pool = pool is None
        self.pool = make_pool(config) if pool is None else pool
        self._opened = pool is not None
        self._open_lock = asyncio.Lock()

    async def open(self) -> None:
        if self._opened:
            return
        async with self._open_lock:  # pages run statements concurrently
            if not self._opened:
                await self.pool.open(wait=True, timeout=self.config.connect_timeout)
                self._opened = True

    async def close(self) -> None:
        if self._owns_pool and self._opened:
            self._opened = False
            await self.pool.close()

    async def fetch(
        self, name: str, params: list[Any] | None = None, *, pgqrs: bool = False
    ) -> list[Row]:
        """Run one statement (the dashboard's, or with ``pgqrs`` one of pgqrs's own)."""
        sql = (self.pgqrs_sql if pgqrs else self.sql)[name]
        await self.open()
        try:
            async with self.pool.connection() as conn:
                cur = psycopg.AsyncRawCursor(conn, row_factory=dict_row)
                await cur.execute(sql, params)
                rows = await cur.fetchall() if cur.description is not None else []
                return rows
        except psycopg.Error as exc:
            raise translate(exc, schema=self.config.schema) from exc

    async def estimate(self, name: str, params: list[Any]) -> int:
        """The planner's row estimate from an ``estimate_*`` function (nothing runs)."""
        rows = await self.fetch(name, params)
        return int(rows[0]["estimate"])

    # --- pages -------------------------------------------------------------

    async def queues(self, name: str | None = None) -> list[QueueRow]:
        """Every queue (or queue ``name``) with its counts, rates and oldest ready age."""
        rows, archive = await asyncio.gather(
            self.fetch("queues", [EXACT_COUNT_LIMIT + 1, name]), self.archive_counts(name)
        )
        result = []
        for r in rows:
            name = r["name"]
            if r["sampled"] > EXACT_COUNT_LIMIT:  # too big to count on every request
                ready, in_flight, delayed = (
                    Count(n, False)
                    for n in await asyncio.gather(
                        self.estimate("estimate_ready", [name]),
                        self.estimate("estimate_in_flight", [name]),
                        self.estimate("estimate_delayed", [name]),
                    )
                )
            else:
                ready, in_flight, delayed = (
                    Count(int(r["ready"])),
                    Count(int(r["in_flight"])),
                    Count(int(r["delayed"])),
                )
            statuses = archive.get(name, {})
            dead = statuses.get("dead", (Count(0), 0))[0]
            others = [c for s, (c, _) in statuses.items()]
            archived = Count(sum(c.value for c in others), all(c.exact for c in others))
            completed_recent = statuses.get("completed", (Count(0), 0))[1]
            failed_recent = sum(n for s, (_, n) in statuses.items() if s != "completed")
            oldest = None
            if ready.value:
                oldest = (await self.fetch("oldest_ready", [name, SCAN_LIMIT]))[0][
                    "oldest_ready_age"
                ]
            settings = _readable_settings(dict(r["settings"]))
            result.append(
                QueueRow(
                    name=name,
                    paused=bool(settings.get("paused")),
                    settings=settings,
                    ready=ready,
                    in_flight=in_flight,
                    delayed=delayed,
                    dead=dead,
                    archived=archived,
                    completed_per_minute=completed_recent / (RATE_WINDOW / 60),
                    failed_per_minute=failed_recent / (RATE_WINDOW / 60),
                    oldest_ready_age=oldest,
                )
            )
        return result

    async def archive_counts(
        self, queue: str | None = None
    ) -> dict[str, dict[str, tuple[Count, int]]]:
        """Per queue and status: the archived count and how many in the rate window."""
        rows = await self.fetch("archive_counts", [EXACT_COUNT_LIMIT + 1, RATE_WINDOW, queue])
        out: dict[str, dict[str, tuple[Count, int]]] = {}
        for r in rows:
            total = int(r["total"])
            count = (
                Count(total)
                if total <= EXACT_COUNT_LIMIT
                else Count(
                    max(await self.estimate("estimate_archived", [r["queue"], r["status"]]), total),
                    False,
                )
            )
            out.setdefault(r["queue"], {})[r["status"]] = (count, int(r["recent"]))
        return out

    async def queue(self, name: str) -> QueueRow | None:
        found = await self.queues(name)
        return found[0] if found else None

    async def series(self, queue: str, window: float) -> list[Series]:
        """Per-minute enqueued and archived-by-status counts over ``window`` seconds."""
        # Three statements, on three connections at once: each is a third of the work.
        in_messages, in_archive, archived = await asyncio.gather(
            self.fetch(
                "series_enqueued_messages",
                [queue, window, SERIES_ROW_LIMIT, SERIES_SAMPLE_LIMIT],
            ),
            self.fetch(
                "series_enqueued_archive",
                [queue, window, SERIES_ROW_LIMIT, SERIES_SAMPLE_LIMIT],
            ),
            self.fetch("series_archived", [queue, window, SERIES_ROW_LIMIT]),
        )
        rows = in_messages + in_archive + archived
        found: dict[str, Series] = {"enqueued": Series("enqueued", {})}
        for fixed in ("completed", "failed", "dead"):
            found[fixed] = Series(fixed, {})
        cuts = set()
        for r in rows:
            name = str(r["series"])
            if name.startswith("cut:"):
                cuts.add(name[4:])
                continue
            if name.startswith("step:"):
                target = found.setdefault(name[5:], Series(name[5:], {}))
                target.sampled = max(target.sampled, int(r["n"]))
                continue
            points = found.setdefault(name, Series(name, {})).points
            points[r["minute"]] = points.get(r["minute"], 0) + int(r["n"])
        for name in cuts:
            found.setdefault(name, Series(name, {})).cut = True
        return list(found.values())

    async def messages(
        self,
        queue: str,
        *,
        state: str | None,
        after: tuple[int, int] | None,
        limit: int = PAGE_SIZE,
    ) -> MessagePage:
        """One page of ``queue``'s messages in delivery order (keyset pagination)."""
        rows = await self.fetch(
            "messages",
            [
                queue,
                after[0] if after else None,
                after[1] if after else None,
                SCAN_LIMIT,
                state,
                limit + 1,
            ],
        )
        page = [r for r in rows if r["kind"] == "row"]
        scanned = [r for r in rows if r["kind"] == "scanned"]
        if len(page) > limit:
            page = page[:limit]
            return MessagePage(page, (page[-1]["priority"], page[-1]["id"]), False)
        if scanned and int(scanned[0]["scanned"]) >= SCAN_LIMIT:
            last = scanned[0]
            return MessagePage(page, (last["priority"], last["id"]), True)
        return MessagePage(page, None, False)

    async def message(self, message_id: int) -> Row | None:
        rows = await self.fetch("message", [message_id])
        return rows[0] if rows else None

    async def archive(
        self,
        *,
        queue: str | None,
        status: str | None,
        since: datetime.datetime | None,
        until: datetime.datetime | None,
        after: tuple[datetime.datetime, int] | None,
        limit: int = PAGE_SIZE,
    ) -> tuple[list[Row], tuple[datetime.datetime, int] | None]:
        """One page of the archive, newest first, and the key of the next page."""
        rows = await self.fetch(
            "archive_search",
            [
                queue,
                status,
                since,
                until,
                after[0] if after else None,
                after[1] if after else None,
                limit + 1,
            ],
        )
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, (rows[-1]["archived_at"], rows[-1]["id"])
        return rows, None

    async def schedules(self) -> list[Row]:
        return await self.fetch("schedules", [SCHEDULE_LIMIT])

    async def workers(self) -> list[Row]:
        workers = await self.fetch("workers", [WORKER_LIMIT])
        running: dict[int, list[Row]] = {}
        for r in await self.fetch("running", [RUNNING_SCAN_LIMIT]):
            running.setdefault(r["leased_by"], []).append(r)
        for w in workers:
            w["running"] = running.get(w["id"], [])
        return workers

    # --- actions -----------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> bool:
        return bool(await self.fetch("queue_set_paused", [queue, paused], pgqrs=True))

    async def purge(self, queue: str) -> int | None:
        rows = await self.fetch("queue_purge", [queue], pgqrs=True)
        return int(rows[0]["purged"]) if rows else None

    async def retry(self, message_id: int) -> bool:
        return bool(await self.fetch("message_retry", [message_id]))

    async def cancel(self, message_id: int) -> tuple[str, str | None]:
        """pgqrs's message_cancel: ('cancelled' | 'cancel_requested' | 'archived'
        | 'not_found', the archive status)."""
        rows = await self.fetch("message_cancel", [[message_id]], pgqrs=True)
        return (rows[0]["outcome"], rows[0]["status"]) if rows else ("not_found", None)

    async def delete(self, message_id: int, *, archived: bool) -> bool:
        return bool(
            await self.fetch("archive_remove" if archived else "message_remove", [message_id])
        )

    async def redrive(self, queue: str, status: str, ids: list[int] | None) -> list[int]:
        rows = await self.fetch("archive_redrive", [queue, status, ids], pgqrs=True)
        return sorted(int(r["id"]) for r in rows)


def _readable_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A queue row's settings as the pages show them: the flow-control limits
    (five columns) as one setting, in the CLI's words ("concurrency 8, per
    group 1, rate 100/s"), so the queues table stays narrow."""
    if not {"concurrency_limit", "group_concurrency", "rate_count"} & settings.keys():
        return settings
    concurrency = settings.pop("concurrency_limit", None)
    per_group = settings.pop("group_concurrency", None)
    count = settings.pop("rate_count", None)
    period = settings.pop("rate_period", None)
    rate_per_group = settings.pop("rate_per_group", None)
    parts = []
    if concurrency is not None:
        parts.append(f"concurrency {concurrency}")
    if per_group is not None:
        parts.append(f"per group {per_group}")
    if count is not None and period is not None:
        parts.append(f"rate {RateLimit(count, period, per_group=bool(rate_per_group))}")
    settings["limits"] = ", ".join(parts) or None
    return settings
