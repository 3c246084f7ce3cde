"""The outcome decision: what a handler's outcome means for its message.

Pure: no I/O, no clock, nothing of the worker imported. ``handlers`` turns
a handler call into a ``HandlerOutcome``; ``decide`` turns that into a
``Decision``: archive as completed; fail (``message_fail``: the server
retries it after the backoff, or archives it as dead when its attempts are
used up; the decision may ask for a delay, or for dead at once); or release
untouched (the worker stopped first). The completer writes the decision,
and the runner emits its event once the write says what became of it.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


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


@dataclasses.dataclass(frozen=True, slots=True)
class Cancelled:
    """A cancellation of the message was requested (Admin.cancel) while it was
    held: the handler was cancelled, never started, or its result is ignored."""


HandlerOutcome = Returned | Raised | Stopped | Cancelled


class Settle(enum.Enum):
    """How the message is settled; the statement that writes it follows."""

    COMPLETED = "completed"  # message_archive, status completed
    #: message_fail: retried after a delay, or archived as dead; the server
    #: decides which (max_attempts) and computes the backoff.
    FAIL = "fail"
    RELEASED = "released"  # message_release at once: the worker stopped first
    CANCELLED = "cancelled"  # message_archive, status cancelled


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    settle: Settle
    #: FAIL: seconds before the retry, as the handler asked (``Retry(delay)``);
    #: None: the backoff's, computed by message_fail.
    delay: float | None = None
    #: FAIL: archive as dead whatever the attempts left (an Abort, or the
    #: handler's own max_attempts, lower than the queue's, is reached).
    dead: bool = False
    #: The handler gave up (Abort): a dead message is no surprise, no "used up" log line.
    aborted: bool = False
    #: The error to record (FAIL), None otherwise.
    error: BaseException | None = None
    #: The handler's attempt counts as failed (counters.failed, the "failed" event).
    failed: bool = False


#: The decisions that carry nothing of the attempt (made once, not per job).
COMPLETED = Decision(Settle.COMPLETED)
RELEASED = Decision(Settle.RELEASED)
CANCELLED = Decision(Settle.CANCELLED)


def decide(outcome: HandlerOutcome, attempt: int, own_limit: int | None) -> Decision:
    """The settlement of attempt number ``attempt``.

    ``own_limit``: the handler's (or worker's) max_attempts when it is lower
    than the queue's, else None. The queue's limit is message_fail's to
    apply; this one only the worker knows, so it forces ``dead`` itself.
    """
    if isinstance(outcome, Returned):
        return COMPLETED
    if isinstance(outcome, Stopped):
        return RELEASED
    if isinstance(outcome, Cancelled):
        return CANCELLED
    return Decision(
        Settle.FAIL,
        delay=outcome.delay,
        dead=outcome.abort or (own_limit is not None and attempt >= own_limit),
        aborted=outcome.abort,
        error=outcome.error,
        failed=not outcome.retry,
    )
