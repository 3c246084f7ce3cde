"""Delays: before retrying a failed job, and before reconnecting to the database."""

from __future__ import annotations

import dataclasses
import random

from pgqrs._errors import InvalidArgument
from pgqrs._worker.defaults import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_JITTER,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_RECONNECT_MAX,
    DEFAULT_RECONNECT_MIN,
)


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Retry delay after a failed attempt: ``base * 2**(attempt-1)``, capped at
    ``max``, spread by +-``jitter`` (a fraction) so that jobs failing together
    do not all come back together."""

    base: float = DEFAULT_BACKOFF_BASE
    max: float = DEFAULT_BACKOFF_MAX
    jitter: float = DEFAULT_BACKOFF_JITTER

    def __post_init__(self) -> None:
        for name in ("base", "max", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidArgument(f"Backoff.{name} must be a number >= 0, got {value!r}")
        if self.jitter > 1:
            raise InvalidArgument(f"Backoff.jitter is a fraction from 0 to 1, got {self.jitter!r}")
        if self.max < self.base:
            raise InvalidArgument(
                f"Backoff.max ({self.max!r}) must be >= Backoff.base ({self.base!r})"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        exponent = min(max(attempt, 1) - 1, 62)
        raw = min(self.max, self.base * 2.0**exponent)
        if self.jitter:
            raw *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max, raw))


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
