# WARNING: generated from src/pgqrs/_async/_calls.py by tools/async_to_sync.py.
# Do not edit: change the asyncio source and regenerate.
"""Typed calls of the server functions that make the worker's decisions in SQL,
once for Python and Rust (as the crate's ``calls.rs``).

``message_fail`` settles failed attempts: a retry after the backoff (computed
in SQL) or the archive as dead, fenced by lease. ``worker_alive`` is a
heartbeat that registers a pruned worker again under its id.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqrs._sync._db import Database
from pgqrs._ops import (
    FailOutcome,
    Failure,
    Heartbeat,
    alive_params,
    fail_params,
    fail_result,
)


def message_fail(
    db: Database,
    failures: Sequence[Failure],
    *,
    backoff_base: float,
    backoff_max: float,
    backoff_jitter: float,
    queue: str | None = None,
) -> list[FailOutcome]:
    """Retry each failed message after its delay (or the backoff), or archive it
    as dead (max_attempts reached, or ``Failure.dead``); one outcome per
    failure, in order. A message whose lease was lost is left untouched."""
    params = fail_params(failures, backoff_base, backoff_max, backoff_jitter)
    return fail_result(db.fetch_tuples("message_fail", params, queue=queue))


def worker_alive(
    db: Database,
    *,
    worker_id: int,
    status: str,
    hostname: str,
    pid: int,
    queues: Sequence[str],
    listening: bool,
) -> Heartbeat:
    """Record worker ``worker_id``'s heartbeat and ``status``; when its row was
    pruned, register it again under the same id with the rest."""
    params = alive_params(worker_id, status, hostname, pid, queues, listening)
    rows = db.fetch("worker_alive", params)
    return Heartbeat(status=rows[0]["status"], registered=rows[0]["registered"])
