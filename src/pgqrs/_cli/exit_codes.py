"""The exit codes of the ``pgqrs`` command, one per kind of failure a script may act on.

They are part of the CLI's contract (the README lists them): scripts can tell
"queue missing" (3) from "database down" (5) without parsing messages.
"""

from __future__ import annotations

from pgqrs._errors import (
    ConfigError,
    ConnectionFailed,
    Error,
    InvalidArgument,
    InvalidQueueName,
    MessageNotFound,
    PayloadError,
    QueueExists,
    QueueNotFound,
    ScheduleExists,
    ScheduleNotFound,
    SchemaNotInstalled,
    WaitTimeout,
)

#: Success.
OK = 0
#: Any other failure (a database error, a refused operation, a bug).
ERROR = 1
#: Bad usage or input: unknown option, invalid JSON, invalid name, bad DSN syntax.
USAGE = 2
#: The queue (or message, or other named thing) does not exist.
NOT_FOUND = 3
#: The pgqrs schema is not installed (or not up to date, for ``verify``): run ``pgqrs install``.
SCHEMA_NOT_INSTALLED = 4
#: PostgreSQL cannot be reached (or the embedded server cannot be started).
CONNECTION_FAILED = 5
#: The thing to create exists already (e.g. ``queue create`` without ``--exist-ok``).
ALREADY_EXISTS = 6
#: ``wait`` gave up: the message was not archived within --timeout.
TIMED_OUT = 7
#: Interrupted with Ctrl-C.
INTERRUPTED = 130

#: Every code with its meaning, for ``--help`` and the README.
DESCRIPTIONS: dict[int, str] = {
    OK: "success",
    ERROR: "other failure (database error, refused operation)",
    USAGE: "bad usage or input (unknown option, invalid JSON, invalid name, malformed DSN)",
    NOT_FOUND: "queue, schedule or message not found",
    SCHEMA_NOT_INSTALLED: "pgqrs schema not installed or not up to date (run `pgqrs install`)",
    CONNECTION_FAILED: "cannot connect to PostgreSQL (or start the embedded server)",
    ALREADY_EXISTS: "already exists (e.g. `queue create` of an existing queue)",
    TIMED_OUT: "timed out (`wait` of a message not archived within --timeout)",
    INTERRUPTED: "interrupted (Ctrl-C)",
}

_BY_TYPE: list[tuple[type[Error], int]] = [
    (QueueNotFound, NOT_FOUND),
    (ScheduleNotFound, NOT_FOUND),
    (MessageNotFound, NOT_FOUND),
    (WaitTimeout, TIMED_OUT),
    (SchemaNotInstalled, SCHEMA_NOT_INSTALLED),
    (ConnectionFailed, CONNECTION_FAILED),
    (QueueExists, ALREADY_EXISTS),
    (ScheduleExists, ALREADY_EXISTS),
    (ConfigError, USAGE),
    (InvalidQueueName, USAGE),
    (InvalidArgument, USAGE),
    (PayloadError, USAGE),
]


def for_error(exc: Error) -> int:
    """The exit code for a pgqrs error."""
    for kind, code in _BY_TYPE:
        if isinstance(exc, kind):
            return code
    return ERROR
