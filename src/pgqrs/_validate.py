"""Rules for the names pgqrs accepts: queue names (data) and the schema name."""

from __future__ import annotations

import re

from pgqrs._errors import ConfigError, InvalidArgument, InvalidQueueName

#: Longest queue name accepted (the same bound is a CHECK in the schema).
MAX_QUEUE_NAME_LENGTH = 128
_QUEUE_NAME = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_QUEUE_NAME_LENGTH}}}")
# Short enough that "<schema>.enqueue" fits a NOTIFY channel (63 bytes).
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_STATUS = re.compile(r"[a-z][a-z0-9_]{0,31}")


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


def validate_status(status: object) -> str:
    """Return ``status`` if it is a valid archive status such as 'completed'."""
    if not isinstance(status, str) or not _STATUS.fullmatch(status):
        raise InvalidArgument(
            f"invalid archive status {status!r}: use a lower-case word such as "
            "'completed' or 'failed' (a-z, 0-9, _; at most 32 characters)"
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
