"""The one exception hierarchy of pgqrs, and the translation of psycopg's errors.

Every error a caller can act on has its own type and a message that names the
offending value and the fix; anything else from the database is wrapped in
`DatabaseError` with psycopg's exception chained as ``__cause__``.
"""

from __future__ import annotations

import dataclasses
import functools

import psycopg


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


class ScheduleNotFound(Error, LookupError):
    """No schedule has that name."""


class ScheduleExists(Error):
    """``create_schedule`` was asked for a name that is taken (a worker's
    ``schedule()`` declaration replaces instead)."""


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


def schedule_not_found(name: str) -> ScheduleNotFound:
    return ScheduleNotFound(f"schedule {name!r} does not exist (see Admin.list_schedules())")


class MessageNotFound(Error, LookupError):
    """No waiting, in-flight or archived message has this id (Admin.cancel)."""

    def __init__(self, message: str, id: int) -> None:
        super().__init__(message)
        self.id = id


class AlreadyArchived(Error):
    """The message is already archived: it cannot be cancelled any more.

    ``status`` says how it ended (completed, failed, dead, cancelled).
    """

    def __init__(self, message: str, id: int, status: str) -> None:
        super().__init__(message)
        self.id = id
        self.status = status


class WaitTimeout(Error, TimeoutError):
    """Admin.wait / Message.wait gave up: the message was not archived in time."""

    def __init__(self, message: str, id: int, timeout: float) -> None:
        super().__init__(message)
        self.id = id
        self.timeout = timeout


def queue_not_found(name: str) -> QueueNotFound:
    return QueueNotFound(
        f"queue {name!r} does not exist (create it with Admin.create_queue({name!r}))"
    )


def wrong_connection(value: object, expected: type) -> InvalidArgument:
    """``connection=`` got something else than the open psycopg connection it needs:
    say what is accepted, instead of failing deep inside with the object's internals."""
    got = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    return InvalidArgument(
        f"connection= takes an open {expected.__module__.split('.')[0]}.{expected.__qualname__} "
        f"(the one your transaction runs on, e.g. from `with pool.connection() as conn`), got "
        f"{got}; leave it out to use pgqrs's own pool"
    )


@dataclasses.dataclass(frozen=True)
class ErrorRule:
    """One row of ``sql/errors.tsv``: a SQLSTATE (or class) and the kind it means."""

    sqlstate: str
    condition: str
    kind: str
    when: str

    def holds(self, *, constraint: str | None, has_queue: bool) -> bool:
        if self.when == "-":
            return True
        if self.when == "queue":
            return has_queue
        return self.when == f"constraint={constraint}"


#: The kinds errors.tsv may name: the exception classes translate() builds.
KINDS = (
    "SchemaNotInstalled",
    "QueueNotFound",
    "InvalidQueueName",
    "PayloadError",
    "InvalidArgument",
    "ConnectionFailed",
    "DatabaseError",
)


@functools.cache
def error_rules() -> dict[str, ErrorRule]:
    """``sql/errors.tsv`` by SQLSTATE: the one table both clients map errors with."""
    from pgqrs._sql import sql_dir  # here: pgqrs._sql imports this module's users

    rules: dict[str, ErrorRule] = {}
    path = sql_dir() / "errors.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#") or line.startswith("sqlstate\t"):
            continue
        fields = line.split("\t")
        if (
            len(fields) != 4
            or len(fields[0]) not in (2, 5)
            or fields[2] not in KINDS
            or not (fields[3] in ("-", "queue") or fields[3].startswith("constraint="))
        ):
            raise RuntimeError(f"{path}:{number}: not 'sqlstate, condition, kind, when': {line!r}")
        rules[fields[0]] = ErrorRule(*fields)
    return rules


def error_kind(sqlstate: str, *, constraint: str | None = None, has_queue: bool = False) -> str:
    """The kind (exception class name) errors.tsv gives ``sqlstate``: its exact row,
    else its class's row, else DatabaseError."""
    rules = error_rules()
    rule = rules.get(sqlstate) or rules.get(sqlstate[:2])
    if rule is None or not rule.holds(constraint=constraint, has_queue=has_queue):
        return "DatabaseError"
    return rule.kind


def translate(exc: psycopg.Error, *, schema: str, queue: str | None = None) -> Error:
    """Map a psycopg error to the pgqrs type that says what went wrong and what to do."""
    text = _first_line(exc)
    sqlstate = exc.sqlstate
    if sqlstate is None:
        # No SQLSTATE: the socket broke, the server went away, or a timeout.
        if isinstance(exc, psycopg.OperationalError):
            return ConnectionFailed(f"cannot talk to PostgreSQL: {text}")
        return DatabaseError(f"PostgreSQL error: {text}")
    constraint = exc.diag.constraint_name
    if constraint is None and "queues_name_valid" in str(exc):
        constraint = "queues_name_valid"
    kind = error_kind(sqlstate, constraint=constraint, has_queue=queue is not None)
    if kind == "SchemaNotInstalled":
        # A missing function or column: the schema predates the migration that added it.
        return SchemaNotInstalled(
            f"the pgqrs schema {schema!r} is not installed in this database, or lacks a "
            f"migration (run Admin.install() or `pgqrs install`): {text}"
        )
    if kind == "QueueNotFound" and queue is not None:
        return queue_not_found(queue)
    if kind == "InvalidQueueName":
        return InvalidQueueName(f"invalid queue name {queue!r}: {text}")
    if kind == "PayloadError":
        return PayloadError(f"PostgreSQL refused the payload: {text}")
    if kind == "InvalidArgument":
        # A server function checked its own arguments (it runs as the schema's owner).
        return InvalidArgument(text)
    if kind == "ConnectionFailed":
        return ConnectionFailed(f"cannot talk to PostgreSQL: {text}")
    return DatabaseError(f"PostgreSQL error: {text}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
