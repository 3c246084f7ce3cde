"""Option types: the retry ``Backoff`` (public) and ``Options``, the worker's validated settings."""

from __future__ import annotations

import dataclasses

from pgqrs._errors import InvalidArgument
from pgqrs._ops import MAX_SECONDS
from pgqrs._worker.defaults import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_JITTER,
    DEFAULT_BACKOFF_MAX,
)


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Retry delay after a failed attempt: ``base * 2**(attempt-1)``, capped at
    ``max``, spread by +-``jitter`` (a fraction) so that jobs failing together
    do not all come back together.

    Data only: the server computes the delay (``message_fail``, the same for
    the Python and Rust workers); these values are checked here, when built.
    """

    base: float = DEFAULT_BACKOFF_BASE
    max: float = DEFAULT_BACKOFF_MAX
    jitter: float = DEFAULT_BACKOFF_JITTER

    def __post_init__(self) -> None:
        for name in ("base", "max", "jitter"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= MAX_SECONDS
            ):
                raise InvalidArgument(
                    f"Backoff.{name} must be a number from 0 to {MAX_SECONDS:.0f}, got {value!r}"
                )
        if self.jitter > 1:
            raise InvalidArgument(f"Backoff.jitter is a fraction from 0 to 1, got {self.jitter!r}")
        if self.max < self.base:
            raise InvalidArgument(
                f"Backoff.max ({self.max!r}) must be >= Backoff.base ({self.base!r})"
            )


@dataclasses.dataclass(frozen=True)
class Options:
    """The worker's settings (validated by the public classes)."""

    concurrency: int
    poll_interval: float
    poll_only: bool
    #: Not in the repr: it may hold a password.
    listen_dsn: str | None = dataclasses.field(repr=False)
    batch_cap: int
    fetch_batch_fraction: float
    fetch_delay: float
    completion_backlog: int
    #: Fixed prefetch (None: adaptive, see the three fields below).
    prefetch: int | None
    prefetch_horizon: float
    prefetch_per_slot: int
    prefetch_duration_weight: float
    prefetch_max_wait: float
    flush_interval: float
    flush_size: int
    grace_period: float
    heartbeat_interval: float
    reap_interval: float
    archive_prune_interval: float
    archive_prune_batch: int
    worker_dead_after: float
    worker_prune_after: float
    lease_extend_at: float
    lease_check_interval: float
    shutdown_write_timeout: float
    backoff: Backoff
    max_attempts: int | None
    visibility_timeout: float | None
    handle_signals: bool
    #: Tick schedules (None: only when the worker declares some).
    run_schedules: bool | None = None
    schedule_tick: float = 1.0
    schedule_catch_up: float = 60.0
