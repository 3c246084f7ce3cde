"""Reconnect waits: exponential, jittered pauses between attempts to reach the database."""

from __future__ import annotations

import random

from pgqrs._worker.defaults import DEFAULT_RECONNECT_MAX, DEFAULT_RECONNECT_MIN


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
