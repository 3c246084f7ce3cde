"""Rules for the names pgqrs accepts: queue names (data) and the schema name."""

from __future__ import annotations

import datetime
import re
from typing import Literal, cast

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
#: The same set as a type, for the type checker (tests check they match).
ArchiveStatus = Literal["completed", "failed", "dead", "cancelled"]


def validate_status(status: object) -> ArchiveStatus:
    """Return ``status`` if it is an archive status (see ``ARCHIVE_STATUSES``)."""
    if not isinstance(status, str) or status not in ARCHIVE_STATUSES:
        shown = status if not isinstance(status, str) or len(status) <= 40 else status[:37] + "..."
        raise InvalidArgument(
            f"unknown archive status {shown!r}: use one of "
            + ", ".join(repr(s) for s in ARCHIVE_STATUSES)
        )
    return cast(ArchiveStatus, status)


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


#: Longest message group accepted, in characters (the schema's CHECK says the same).
MAX_GROUP_LENGTH = 128


def validate_group(group: object) -> str | None:
    """Return ``group`` (None: no group) if it can name a message group, else raise."""
    if group is None:
        return None
    if not isinstance(group, str) or not group or "\x00" in group or len(group) > MAX_GROUP_LENGTH:
        shown = group if not isinstance(group, str) or len(group) <= 60 else group[:57] + "..."
        raise InvalidArgument(
            f"group must be a non-empty str of at most {MAX_GROUP_LENGTH} characters without "
            f"NUL (or None), got {shown!r}"
        )
    try:
        group.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"group {group[:60]!r} is not valid UTF-8 text") from None
    return group


#: Largest concurrency or rate count (a PostgreSQL integer).
MAX_LIMIT = 2**31 - 1
#: Longest rate period accepted, in seconds (a leap year; the schema's CHECK says the same).
MAX_RATE_PERIOD = 31_622_400.0


def validate_limit(value: object, what: str) -> int | None:
    """A concurrency limit: an int >= 1, or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidArgument(f"{what} must be an int >= 1 (or None for no limit), got {value!r}")
    return value


def check_rate_limit(count: object, period: object, per_group: object) -> None:
    """Raise InvalidArgument naming the value unless it is a valid rate limit."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_LIMIT:
        raise InvalidArgument(f"rate limit count must be an int >= 1, got {count!r}")
    if (
        isinstance(period, bool)
        or not isinstance(period, (int, float))
        or not 0 < period <= MAX_RATE_PERIOD
    ):
        raise InvalidArgument(
            f"rate limit period must be seconds > 0 and at most {MAX_RATE_PERIOD:.0f} "
            f"(a year), got {period!r}"
        )
    if not isinstance(per_group, bool):
        raise InvalidArgument(f"rate limit per_group must be a bool, got {per_group!r}")


_RATE = re.compile(
    r"\s*(\d{1,10})\s*/\s*(\d+(?:\.\d+)?)?\s*(s|sec|second|m|min|minute|h|hour)s?\s*"
)
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_UNITS.update({"h": 3600.0, "hour": 3600.0})


def parse_rate_limit(text: object) -> tuple[int, float]:
    """``"100/s"`` -> (100, 1.0); also ``/m``, ``/h`` and ``"10/2s"``."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidArgument(
            f"malformed rate limit {text!r}: use COUNT/UNIT with UNIT s, m or h "
            "(e.g. '100/s', '600/m', '10/2s'), or pgqrs.RateLimit(count, period_seconds)"
        )
    count, amount, unit = match.groups()
    period = float(amount or 1) * _UNITS[unit]
    try:
        check_rate_limit(int(count), period, False)
    except InvalidArgument as exc:
        raise InvalidArgument(f"rate limit {text!r}: {exc}") from None
    return int(count), period
