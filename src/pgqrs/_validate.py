"""Rules for the names pgqrs accepts: queue names (data) and the schema name."""

from __future__ import annotations

import datetime
import re

from pgqrs._errors import ConfigError, InvalidArgument, InvalidQueueName

#: Longest queue name accepted (the same bound is a CHECK in the schema).
MAX_QUEUE_NAME_LENGTH = 128
_QUEUE_NAME = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_QUEUE_NAME_LENGTH}}}")
# Short enough that "<schema>.enqueue" fits a NOTIFY channel (63 bytes).
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a valid queue name, else raise InvalidQueueName."""
    if not isinstance(name, str):
        raise InvalidQueueName(f"queue name must be a str, got {type(name).__name__}")
    if not _QUEUE_NAME.fullmatch(name):
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise InvalidQueueName(
            f"invalid queue name {shown!r}: use 1 to {MAX_QUEUE_NAME_LENGTH} characters "
            "among letters, digits and _ - . :"
        )
    return name


def validate_schema_name(name: object) -> str:
    """Return ``name`` if it is a valid schema name, else raise ConfigError."""
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise ConfigError(
            f"invalid schema name {name!r}: use a lower-case letter or _ then up to 47 "
            "lower-case letters, digits or _"
        )
    return name


#: The archive statuses: what a worker writes (completed, dead), what a
#: consumer may say it did (failed), and what a cancellation ends as
#: (cancelled: Admin.cancel, see docs/lifecycle.md). A fixed set, so a typo such as "donez" is
#: refused instead of stored, where no filter would ever find it. Rust:
#: ``validate::ARCHIVE_STATUSES``.
ARCHIVE_STATUSES = ("completed", "failed", "dead", "cancelled")


def validate_status(status: object) -> str:
    """Return ``status`` if it is an archive status (see ``ARCHIVE_STATUSES``)."""
    if not isinstance(status, str) or status not in ARCHIVE_STATUSES:
        shown = status if not isinstance(status, str) or len(status) <= 40 else status[:37] + "..."
        raise InvalidArgument(
            f"unknown archive status {shown!r}: use one of "
            + ", ".join(repr(s) for s in ARCHIVE_STATUSES)
        )
    return status


#: Longest role name PostgreSQL keeps (NAMEDATALEN - 1 bytes); longer ones are truncated.
MAX_ROLE_NAME_BYTES = 63


def validate_role_name(name: object) -> str:
    """Return ``name`` if it can name a PostgreSQL role, else raise InvalidArgument.

    Role names are identifiers: any text is quoted safely (format('%I')), but a
    NUL cannot be sent and a longer name would be silently truncated.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidArgument(f"role must be a non-empty str without NUL, got {name!r}")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(f"role {name!r} is not valid UTF-8 text") from None
    if size > MAX_ROLE_NAME_BYTES:
        raise InvalidArgument(
            f"role {name[:20]!r}... is {size} bytes; PostgreSQL role names have at most "
            f"{MAX_ROLE_NAME_BYTES}"
        )
    if name.lower() == "public":
        raise InvalidArgument("grant to a named role, not PUBLIC (everyone)")
    return name


#: Longest dedup key accepted, in characters (the schema's CHECK says the same).
MAX_DEDUP_KEY_LENGTH = 512


def validate_dedup_key(key: object) -> str:
    """Return ``key`` if PostgreSQL can store it as a dedup key, else raise InvalidArgument.

    A lone UTF-16 surrogate (from ``surrogateescape`` decoding, or a JSON
    ``\\ud800``) cannot be encoded to UTF-8: refused here, named, instead of a
    raw UnicodeEncodeError from the driver.
    """
    if not isinstance(key, str) or not key or "\x00" in key or len(key) > MAX_DEDUP_KEY_LENGTH:
        shown = key if not isinstance(key, str) or len(key) <= 60 else key[:57] + "..."
        raise InvalidArgument(
            f"dedup_key must be a non-empty str of at most {MAX_DEDUP_KEY_LENGTH} characters "
            f"without NUL, got {shown!r}"
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(
            f"dedup_key {key[:60]!r} holds a lone UTF-16 surrogate ({key[exc.start]!r} at "
            f"{exc.start}), which is not text PostgreSQL can store; clean it first "
            "(e.g. key.encode('utf-8', 'replace').decode())"
        ) from None
    return key


def check_available_at(
    when: datetime.datetime | None, delay: float | None
) -> datetime.datetime | None:
    """Return ``when`` unless it (plus ``delay`` seconds) falls after year 9999.

    PostgreSQL would store such a time, but Python's datetime cannot hold it:
    the Message returned would fail to load (psycopg's bare "timestamp too
    large") after the row was written.
    """
    if when is None:
        return None
    try:
        (when + datetime.timedelta(seconds=delay or 0)).astimezone(datetime.timezone.utc)
    except OverflowError:
        raise InvalidArgument(
            f"available_at {when.isoformat()}"
            + (f" plus delay {delay:g}s" if delay else "")
            + " is after year 9999, which a Python datetime cannot hold; give an earlier time"
        ) from None
    return when
