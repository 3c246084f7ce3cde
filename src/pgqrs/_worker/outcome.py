"""The outcome decision: what a handler's outcome means for its message.

Pure: no I/O, no clock, nothing of the worker imported. ``handlers`` turns
a handler call into a ``HandlerOutcome``; ``decide`` turns that into a
``Decision``: archive as completed, release for a retry after a delay,
archive as dead, or release untouched (the worker stopped first). The
runtime writes the decision (``completer``), and emits its event once the
write went through.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Literal, Protocol


class Delays(Protocol):
    """The retry delays (``options.Backoff`` is one)."""

    def delay(self, attempt: int) -> float: ...


@dataclasses.dataclass(slots=True)
class Returned:
    """The handler returned ``result`` (``result_json``: it, encoded and size-checked)."""

    result: Any
    result_json: str | None


@dataclasses.dataclass(slots=True)
class Raised:
    """The handler raised ``error`` (its result refused counts as a raise too).

    ``retry``: it asked for another attempt (``pgqrs.Retry``), after ``delay``
    seconds (None: the backoff's). ``abort``: it gave up (``pgqrs.Abort``).
    """

    error: BaseException
    retry: bool = False
    delay: float | None = None
    abort: bool = False


@dataclasses.dataclass(slots=True)
class Stopped:
    """The worker stopped before the handler finished (the grace period ended)."""


HandlerOutcome = Returned | Raised | Stopped


class Settle(enum.Enum):
    """What becomes of the message; the value is the event (and counter) once written."""

    COMPLETED = "completed"  # archived, status completed
    RETRIED = "retried"  # released, visible again after a delay
    DEAD = "dead"  # archived, status dead
    RELEASED = "released"  # released at once: the worker stopped first


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    settle: Settle
    #: The statement that writes it.
    write: Literal["archive", "release"]
    #: Release delay in seconds (RETRIED).
    delay: float = 0.0
    #: The error to record (RETRIED, DEAD), None otherwise.
    error: BaseException | None = None
    #: The handler's attempt counts as failed (counters.failed, the "failed" event).
    failed: bool = False
    #: Dead because the attempts are used up (not an Abort): worth its own log line.
    exhausted: bool = False


#: The decisions that carry nothing of the attempt (made once, not per job).
COMPLETED = Decision(Settle.COMPLETED, "archive")
RELEASED = Decision(Settle.RELEASED, "release")


def decide(outcome: HandlerOutcome, attempt: int, max_attempts: int, backoff: Delays) -> Decision:
    """The settlement of attempt number ``attempt`` (``max_attempts`` allowed)."""
    if isinstance(outcome, Returned):
        return COMPLETED
    if isinstance(outcome, Stopped):
        return RELEASED
    failed = not outcome.retry
    if outcome.abort:
        return Decision(Settle.DEAD, "archive", error=outcome.error, failed=True)
    if attempt >= max_attempts:
        return Decision(Settle.DEAD, "archive", error=outcome.error, failed=failed, exhausted=True)
    delay = backoff.delay(attempt) if outcome.delay is None else outcome.delay
    return Decision(Settle.RETRIED, "release", delay=delay, error=outcome.error, failed=failed)
