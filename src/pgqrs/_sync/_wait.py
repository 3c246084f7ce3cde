# WARNING: generated from src/pgqrs/_async/_wait.py by tools/async_to_sync.py.
# Do not edit: change the asyncio source and regenerate.
"""Waiting for a message to be archived (``Admin.wait``, ``Message.wait``).

Woken by NOTIFY, guaranteed by polling. The waiter registers its id
(``archive_wait``), so the archive's trigger NOTIFYs channel
``<schema>.archived`` only while someone waits: archiving stays free of
NOTIFY otherwise (NOTIFY serialises committing transactions). The same
statement returns the row if it is already archived, so nothing is missed
between registering and listening (LISTEN comes first). Behind pgBouncer in
transaction mode LISTEN hears nothing: the poll (``archive_get`` every
``POLL_INTERVAL``) finds the row all the same.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import psycopg
from psycopg import sql

from pgqrs._sync import _calls as calls
from pgqrs._sync._db import Database
from pgqrs._errors import InvalidArgument, WaitTimeout, translate
from pgqrs._models import ArchivedMessage

#: Seconds between two looks at the archive when no NOTIFY came (pgBouncer).
POLL_INTERVAL = 0.5
#: How long a registration lasts before it is renewed (a waiter that died
#: leaves it behind this long at most).
REGISTRATION = 600.0


def wait_timeout(timeout: Any) -> float | None:
    """``timeout`` as seconds (None: for ever), or InvalidArgument."""
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise InvalidArgument(
            f"timeout must be a number of seconds >= 0 or None (wait for ever), got {timeout!r}"
        )
    return float(timeout)


def message_id(value: Any, what: str = "message id") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise InvalidArgument(f"{what} must be a positive int (a message's id), got {value!r}")
    return value


def wait_archived(db: Database, id: int, timeout: float | None) -> ArchivedMessage:
    """The archived row of message ``id``, once there; WaitTimeout after ``timeout`` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    config = db.config
    try:
        conn = psycopg.Connection.connect(config.dsn, **config.connect_kwargs())
    except psycopg.Error as exc:
        raise translate(exc, schema=config.schema) from exc
    with conn:
        try:
            conn.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(f"{config.schema}.archived"))
            )
        except psycopg.Error as exc:
            raise translate(exc, schema=config.schema) from exc
        renew_at = 0.0
        try:
            while True:
                now = time.monotonic()
                if now >= renew_at:
                    rows = calls.archive_wait(
                        db, ids=[id], seconds=REGISTRATION, connection=conn
                    )
                    renew_at = now + REGISTRATION / 2
                else:
                    rows = calls.archive_get(db, ids=[id], connection=conn)
                if rows:
                    return rows[0]
                left = POLL_INTERVAL if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(
                        f"message {id} was not archived within {timeout}s "
                        "(it may still be waiting or running; wait again or cancel it)",
                        id,
                        float(timeout or 0.0),
                    )
                try:
                    for _ in conn.notifies(timeout=min(left, POLL_INTERVAL), stop_after=1):
                        pass
                except psycopg.Error as exc:
                    raise translate(exc, schema=config.schema) from exc
        finally:
            if not conn.closed:
                # Best effort: the registration expires anyway.
                with contextlib.suppress(Exception):
                    calls.archive_wait(db, ids=[id], seconds=None, connection=conn)
