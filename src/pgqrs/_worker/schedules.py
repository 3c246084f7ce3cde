"""Running schedules (docs/schedules.md): declare at start, then tick.

No leader: every worker that runs schedules ticks. A tick is one statement
(schedule_due) returning only what is due; for each due schedule the worker
computes the slots (``pgqrs._schedule.plan``) and calls schedule_fire, which
records the slots, enqueues their messages and moves next_slot in one
transaction, compare-and-set on the next_slot the tick read: when two
workers fire the same slot, the second changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable

from pgqrs._async import _calls as calls
from pgqrs._async._db import Database
from pgqrs._errors import ConnectionFailed, Error
from pgqrs._schedule import ScheduleSpec, plan, timing

logger = logging.getLogger("pgqrs.worker")


async def declare(db: Database, specs: list[ScheduleSpec]) -> None:
    """The worker's schedules, upserted (idempotent: unchanged ones write nothing)."""
    for spec in specs:
        await calls.schedule_upsert(
            db,
            name=spec.name,
            queue=spec.queue,
            payload=spec.payload,
            headers=spec.headers,
            priority=spec.priority,
            cron=spec.cron,
            interval=spec.interval,
            time_zone=spec.time_zone,
            missed=spec.missed,
            replace=True,
        )


class Scheduler:
    """The tick loop of one worker."""

    def __init__(
        self,
        db: Database,
        *,
        tick: float,
        catch_up: float,
        stopped: Callable[[], bool],
        on_tick: Callable[[], None],
    ) -> None:
        self.db = db
        self.tick = tick
        self.catch_up = catch_up
        self.stopped = stopped
        self.on_tick = on_tick
        #: Messages this worker enqueued for schedules (tests, telemetry).
        self.fired = 0

    async def run(self) -> None:
        while not self.stopped():
            try:
                delay = await self.tick_once()
            except ConnectionFailed as exc:
                logger.warning("schedule tick failed (retrying): %s", exc)
                delay = self.tick
            except Error as exc:  # a bad row must not stop the worker
                logger.error("schedule tick failed: %s", exc)
                delay = self.tick
            self.on_tick()
            await asyncio.sleep(delay)  # cancelled at shutdown

    async def tick_once(self) -> float:
        """One tick: fire what is due; the seconds to sleep until the next."""
        due, now, upcoming = await calls.schedule_due(self.db)
        for row in due:
            try:
                t = timing(row.cron, row.interval, row.time_zone)
                slots, next_slot = plan(
                    t,
                    next_slot=row.next_slot,
                    last_slot=row.last_slot,
                    now=now,
                    missed=row.missed,
                    catch_up=self.catch_up,
                )
            except Error as exc:  # stored by an older client, say: log, keep the others going
                logger.error("schedule %r cannot be planned: %s", row.name, exc)
                continue
            done = await calls.schedule_fire(
                self.db, name=row.name, slots=slots, next_slot=next_slot, expected=row.next_slot
            )
            self.fired += len(done)
            if len(done) < len(slots):
                logger.debug(
                    "schedule %r: %d of %d slot(s) enqueued here (fired elsewhere, or queue gone)",
                    row.name,
                    len(done),
                    len(slots),
                )
            if upcoming is None or next_slot < upcoming:
                upcoming = next_slot
        if upcoming is None:
            return self.tick
        until: float = (upcoming - now) / datetime.timedelta(seconds=1)
        # A little after the slot: database time decides it is due.
        return float(min(self.tick, max(0.005, until + 0.005)))
