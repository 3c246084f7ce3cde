"""The worker's row: registration, heartbeat (``worker_alive``), the final
status, and reaping.

The heartbeat keeps the worker's row fresh so others can tell it is alive.
A row pruned while the worker could not reach the database is registered
again by the heartbeat itself, under the same id (``worker_alive`` decides
that in SQL, for the Python and Rust workers alike). Every ``reap_interval``
the worker also marks silent workers dead (and prunes long-dead ones), so no
separate janitor is needed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from pgqrs._async import _calls as calls
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
        on_cancelled: Callable[[list[tuple[int, Any]]], int] | None = None,
    ) -> None:
        """``on_cancelled(held)``: the cancel poll found these (id, lease) of
        this worker's messages marked cancelled (Admin.cancel)."""
        self._db = db
        self._queues = queues
        self._options = options
        self._stopping = stopping
        self._on_registered = on_registered
        self._registered = registered
        self._beat = beat
        self._on_cancelled = on_cancelled
        self._hostname = socket.gethostname()
        self._pid = os.getpid()
        self.worker_id: int | None = None

    async def register(self) -> None:
        """Add this worker to the workers table (at start)."""
        self.worker_id = await calls.worker_register(
            self._db,
            hostname=self._hostname,
            pid=self._pid,
            queues=self._queues,
            listening=not self._options.poll_only,
        )
        self._on_registered(self.worker_id)
        self._registered.fire()

    async def alive(self, status: str) -> None:
        """Write one heartbeat with ``status`` ('running' or 'stopping'); the row
        comes back under the same id if it was pruned."""
        assert self.worker_id is not None, "register() first"
        beat = await calls.worker_alive(
            self._db,
            worker_id=self.worker_id,
            status=status,
            hostname=self._hostname,
            pid=self._pid,
            queues=self._queues,
            listening=not self._options.poll_only,
        )
        if beat.registered:  # pruned while we could not reach the database
            logger.warning("worker row %s was pruned; registered again", self.worker_id)
            self._registered.fire()

    async def poll_cancelled(self) -> None:
        """The cancel poll: this worker's held messages whose cancellation was
        requested (an index probe of an almost always empty partial index)."""
        if self._on_cancelled is None or self.worker_id is None:
            return
        held = await calls.message_cancelled(self._db, worker_id=self.worker_id)
        if held:
            self._on_cancelled(held)

    async def prune_archives(self) -> int:
        """Enforce the served queues' archive_retention: ``archive_prune`` in
        batches, again while a batch was full. Another worker pruning a queue
        (the function's try-lock) or no retention: one statement, no wait."""
        total = 0
        batch = self._options.archive_prune_batch
        for queue in self._queues:
            while True:
                pruned = await calls.archive_prune(self._db, queue=queue, batch=batch)
                if pruned is None:
                    break
                total += pruned
                if pruned < batch:
                    break
        if total:
            logger.info("pruned %d archived message(s) past their queue's retention", total)
        return total

    async def stopped(self) -> None:
        """Mark the worker's row stopped (its last write)."""
        await calls.worker_stop(self._db, worker_id=self.worker_id)

    async def run(self) -> None:
        opts = self._options
        reconnect = Reconnect()
        last_reap = time.monotonic()
        last_prune = 0.0  # the first heartbeat prunes
        while True:
            await asyncio.sleep(opts.heartbeat_interval)
            try:
                await self.alive("stopping" if self._stopping() else "running")
                await self.poll_cancelled()
                if time.monotonic() - last_prune >= opts.archive_prune_interval:
                    last_prune = time.monotonic()
                    await self.prune_archives()
                if time.monotonic() - last_reap >= opts.reap_interval:
                    last_reap = time.monotonic()
                    await calls.worker_reap(
                        self._db,
                        dead_after=opts.worker_dead_after,
                        prune_after=opts.worker_prune_after,
                    )
            except Error as exc:
                reconnect.failed()
                log = logger.warning if reconnect.failures == 1 else logger.debug
                log("heartbeat failed: %s", exc)
            else:
                reconnect.succeeded()
                self._beat.fire()
