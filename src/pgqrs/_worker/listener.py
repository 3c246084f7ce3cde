"""LISTEN for enqueue notifications: a wake-up hint, never relied on.

message_enqueue sends one NOTIFY per statement on channel
``<schema>.enqueue`` with the queue name as payload. A dedicated connection
(``listen_dsn``, e.g. a direct one when the pool goes through pgBouncer in
transaction mode, where LISTEN does not work) receives them. After every
(re)connect every queue is polled, since notifications sent while the
connection was down are lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from pgqrs._config import mask_dsn
from pgqrs._worker.fetcher import QueueState
from pgqrs._worker.reconnect import Reconnect

logger = logging.getLogger("pgqrs.worker")


class Listener:
    def __init__(
        self,
        dsn: str,
        schema: str,
        connect_kwargs: dict[str, Any],
        *,
        queues: list[QueueState],
        on_listening: Callable[[], None] = lambda: None,
    ) -> None:
        """A notification wakes the queue it names; each time LISTEN is in
        effect (at start and after a reconnect) every queue wakes, then
        ``on_listening()`` is called."""
        self._dsn = dsn
        self._channel = f"{schema}.enqueue"
        self._kwargs = connect_kwargs
        self._queues = {q.name: q for q in queues}
        self._on_listening = on_listening
        #: True while LISTEN is in effect.
        self.listening = False

    async def run(self) -> None:
        reconnect = Reconnect()
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._dsn, **self._kwargs)
                try:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self.listening = True
                    if reconnect.succeeded():
                        logger.info("listening for enqueue notifications again")
                    for q in self._queues.values():
                        q.wake()
                    self._on_listening()
                    async for notify in conn.notifies():
                        woken = self._queues.get(notify.payload)
                        if woken is not None:
                            woken.wake()
                finally:
                    self.listening = False
                    await asyncio.shield(conn.close())
            except (psycopg.Error, OSError) as exc:
                wait = reconnect.failed()
                log = logger.warning if reconnect.failures == 1 else logger.debug
                log(
                    "LISTEN connection to %s lost (%s); polling meanwhile, reconnecting in %.2fs",
                    mask_dsn(self._dsn),
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    wait,
                )
                await asyncio.sleep(wait)
