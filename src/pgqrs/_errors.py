"""The one exception hierarchy of pgqrs, and the translation of psycopg's errors.

Every error a caller can act on has its own type and a message that names the
offending value and the fix; anything else from the database is wrapped in
`DatabaseError` with psycopg's exception chained as ``__cause__``.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors


class Error(Exception):
    """Root of every exception pgqrs raises."""


class ConfigError(Error, ValueError):
    """A configuration value (DSN, schema name, option) is invalid."""


class InvalidArgument(Error, ValueError):
    """An argument is out of range or of the wrong kind (the message says which)."""


class ConnectionFailed(Error):
    """PostgreSQL could not be reached, or the connection broke mid-operation."""


class DatabaseError(Error):
    """PostgreSQL refused an operation for a reason pgqrs has no better type for."""


class SchemaNotInstalled(Error):
    """The pgqrs schema is missing or older than this library needs."""


class InvalidQueueName(Error, ValueError):
    """A queue name broke the naming rules (they are data, never SQL identifiers)."""


class QueueNotFound(Error, LookupError):
    """No queue has that name."""


class QueueExists(Error):
    """``create_queue`` was asked for a name that is taken (pass ``exist_ok=True``)."""


class PayloadError(Error, ValueError):
    """A payload or header cannot be stored as JSON (invalid, too large, NUL, ...)."""


class LeaseError(Error):
    """Base of the fencing errors: the caller does not hold the message's lease."""

    def __init__(self, message: str, ids: list[int]) -> None:
        super().__init__(message)
        #: The message ids the operation was refused for.
        self.ids = ids


class LeaseExpired(LeaseError):
    """The lease ran out and the message was redelivered, archived or deleted since.

    The row was left untouched: another consumer owns the message now.
    """

    def __init__(self, message: str, ids: list[int], succeeded: list[int] | None = None) -> None:
        super().__init__(message, ids)
        #: For batch operations: the ids that did go through.
        self.succeeded = succeeded or []


class LeaseNotHeld(LeaseError):
    """A message id was given that this Consumer never dequeued (pass the Message)."""


def queue_not_found(name: str) -> QueueNotFound:
    return QueueNotFound(
        f"queue {name!r} does not exist (create it with Admin.create_queue({name!r}))"
    )


def translate(exc: psycopg.Error, *, schema: str, queue: str | None = None) -> Error:
    """Map a psycopg error to the pgqrs type that says what went wrong and what to do."""
    if isinstance(
        exc,
        (
            pg_errors.UndefinedTable,
            pg_errors.InvalidSchemaName,
            pg_errors.UndefinedFunction,
            pg_errors.UndefinedColumn,
        ),
    ):
        # A missing function or column: the schema predates the migration that added it.
        return SchemaNotInstalled(
            f"the pgqrs schema {schema!r} is not installed in this database, or lacks a "
            f"migration (run Admin.install() or `pgqrs install`): {_first_line(exc)}"
        )
    if isinstance(exc, pg_errors.ForeignKeyViolation) and queue is not None:
        return queue_not_found(queue)
    if isinstance(exc, pg_errors.CheckViolation) and "queues_name_valid" in str(exc):
        return InvalidQueueName(f"invalid queue name {queue!r}: {_first_line(exc)}")
    if isinstance(
        exc,
        (
            pg_errors.InvalidTextRepresentation,
            pg_errors.UntranslatableCharacter,
            pg_errors.InvalidParameterValue,
            pg_errors.NumericValueOutOfRange,
        ),
    ):
        return PayloadError(f"PostgreSQL refused the payload: {_first_line(exc)}")
    if isinstance(exc, psycopg.OperationalError):
        return ConnectionFailed(f"cannot talk to PostgreSQL: {_first_line(exc)}")
    return DatabaseError(f"PostgreSQL error: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
