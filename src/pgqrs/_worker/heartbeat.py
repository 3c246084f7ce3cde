"""The worker's row: registration, heartbeat, re-registration after a prune, reaping.

The heartbeat keeps the worker's row fresh so others can tell it is alive;
a row pruned while the worker could not reach the database is registered
again. Every ``reap_interval`` the worker also marks silent workers dead
(and prunes long-dead ones), so no separate janitor is needed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

from pgqrs._async._db import Database
from pgqrs._errors import Error
from pgqrs._worker.events import Signal
from pgqrs._worker.options import Options
from pgqrs._worker.reconnect import Reconnect

logger = logging.getLogger("pgqrs.worker")


class Heartbeat:
    def __init__(
        self,
        db: Database,
        queues: list[str],
        options: Options,
        *,
        stopping: Callable[[], bool],
        on_registered: Callable[[int], None],
        registered: Signal,
        beat: Signal,
    ) -> None:
        self._db = db
        self._queues = queues
        self._options = options
        self._stopping = stopping
        self._on_registered = on_registered
        self._registered = registered
        self._beat = beat
        self.worker_id: int | None = None

    async def register(self) -> None:
        """Add this worker to the workers table (at start, and again if it was pruned)."""
        rows = await self._db.fetch(
            "worker_register",
            [socket.gethostname(), os.getpid(), self._queues, not self._options.poll_only],
        )
        self.worker_id = rows[0]["id"]
        self._on_registered(rows[0]["id"])
        self._registered.fire()

    async def run(self) -> None:
        opts = self._options
        reconnect = Reconnect()
        last_reap = time.monotonic()
        while True:
            await asyncio.sleep(opts.heartbeat_interval)
            try:
                status = "stopping" if self._stopping() else "running"
                rows = await self._db.fetch("worker_heartbeat", [self.worker_id, status])
                if not rows:  # pruned while we could not reach the database
                    await self.register()
                    logger.warning(
                        "worker row was pruned; registered again as worker %s", self.worker_id
                    )
                if time.monotonic() - last_reap >= opts.reap_interval:
                    last_reap = time.monotonic()
                    await self._db.fetch(
                        "worker_reap", [opts.worker_dead_after, opts.worker_prune_after]
                    )
            except Error as exc:
                reconnect.failed()
                log = logger.warning if reconnect.failures == 1 else logger.debug
                log("heartbeat failed: %s", exc)
            else:
                reconnect.succeeded()
                self._beat.fire()
