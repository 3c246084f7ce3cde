"""Reconnect waits: exponential, jittered pauses between attempts to reach the database."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pgqrs._errors import ConnectionFailed
from pgqrs._worker.defaults import DEFAULT_RECONNECT_MAX, DEFAULT_RECONNECT_MIN

logger = logging.getLogger("pgqrs.worker")
T = TypeVar("T")


class Reconnect:
    """Exponential wait between attempts to reach the database again."""

    def __init__(
        self, low: float = DEFAULT_RECONNECT_MIN, high: float = DEFAULT_RECONNECT_MAX
    ) -> None:
        self._low = low
        self._high = high
        self._next = low
        #: Consecutive failures (0 while healthy); callers log the first loudly.
        self.failures = 0

    def failed(self) -> float:
        """Record a failure; return the seconds to wait before the next attempt."""
        self.failures += 1
        wait = self._next
        self._next = min(self._high, self._next * 2)
        return wait * random.uniform(0.8, 1.2)

    def succeeded(self) -> bool:
        """Record a success; True when it ends a run of failures (worth a log line)."""
        recovered = self.failures > 0
        self.failures = 0
        self._next = self._low
        return recovered


async def retry_connection(
    step: Callable[[], Awaitable[T]], what: str, stop: Callable[[], Awaitable[None]]
) -> T | None:
    """Run ``step`` until it gets through, waiting the reconnect wait after each
    connection failure (the database restarting, a connection killed); any
    other error is the caller's. None once ``stop()`` returns during a wait.

    Why: the worker retries connection failures everywhere; this is the same
    rule for a step that has no loop of its own (the start-up).
    """
    reconnect = Reconnect()
    while True:
        try:
            result = await step()
        except ConnectionFailed as exc:
            wait = reconnect.failed()
            log = logger.warning if reconnect.failures == 1 else logger.debug
            log("%s failed, retrying in %.2fs: %s", what, wait, exc)
            stopping = asyncio.ensure_future(stop())
            done, _ = await asyncio.wait([stopping], timeout=wait)
            stopping.cancel()
            if done:
                return None
            continue
        if reconnect.failures:
            logger.info("%s went through after %d failure(s)", what, reconnect.failures)
        return result
