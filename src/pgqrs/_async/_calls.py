"""The typed query layer: one function per named query of ``sql/queries/``,
named as the query, with keyword parameters and typed results.

Why: a call site says what it passes (``queue_create(db, name=..., ...)``),
never a positional list whose order only the SQL file knows; the order, the
encodings and the row shapes live here, once (as the crate's ``calls.rs``).
The hot statements keep their cost: array parameters go as text literals
(``pgqrs._ops``) and their rows come back as tuples.

Preconditions are the callers' (the public classes validate user input): a
queue name or status passed here is already checked. ``connection`` runs the
query on the caller's connection (a transaction) instead of the pool.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from pgqrs._async._db import Database
from pgqrs._models import (
    ArchivedMessage,
    Message,
    QueueInfo,
    QueueStats,
    RateLimit,
    ScheduleInfo,
    WorkerInfo,
)
from pgqrs._ops import (
    AppliedMigration,
    Dequeued,
    FailOutcome,
    Failure,
    FencedRow,
    Heartbeat,
    InsertRow,
    QueueLimits,
    RecordedFunction,
    alive_params,
    array_literal,
    dequeue_result,
    enqueue_result,
    fail_params,
    fail_result,
    fenced_refs,
    optional_texts,
)
from pgqrs._schedule import DueSchedule

Connection = psycopg.AsyncConnection[Any]

# -- messages: the hot statements ---------------------------------------------------------


async def message_enqueue(
    db: Database,
    *,
    queue: str,
    payloads: Sequence[str],
    priorities: Sequence[int],
    delays: Sequence[float | None],
    available_at: Sequence[Any],
    dedup_keys: Sequence[str | None],
    headers: Sequence[str | None],
    groups: Sequence[str | None],
    connection: Connection | None = None,
) -> list[Message]:
    """Enqueue one message per JSON text in ``payloads`` (the other arrays: one
    entry each); a dedup key already waiting or in flight gives that message
    back (``inserted=False``). [] when the queue is missing."""
    rows = await db.fetch_tuples(
        "message_enqueue",
        [queue, payloads, priorities, delays, available_at, dedup_keys, headers, groups],
        connection=connection,
        queue=queue,
    )
    return enqueue_result(rows, groups)


async def message_insert(
    db: Database,
    *,
    queue: str,
    payloads: str,
    priority: int,
    delay: float | None,
    available_at: Any,
    headers: str | None,
    group: str | None,
    connection: Connection | None = None,
) -> InsertRow:
    """Insert the messages of ``payloads`` (one JSON array text) sharing the
    other options (no dedup keys, one group): their ids in input order and
    their shared times; ids None when the queue is missing."""
    (row,) = await db.fetch_tuples(
        "message_insert",
        [queue, payloads, priority, delay, available_at, headers, group],
        connection=connection,
        queue=queue,
    )
    return row


async def message_dequeue(
    db: Database,
    *,
    queue: str,
    limit: int,
    visibility_timeout: float | None,
    worker_id: int | None,
) -> Dequeued:
    """Lease up to ``limit`` ready messages for ``visibility_timeout`` seconds
    (None: the queue's); rows whose attempts are used up are archived as dead
    instead, and the batch still fills. A queue's flow-control limits may
    give fewer (``retry_after``: when its rate limit gives the next token).
    ``QueueNotFound`` when it is missing."""
    rows = await db.fetch_tuples(
        "message_dequeue", [queue, limit, visibility_timeout, worker_id], queue=queue
    )
    return dequeue_result(rows, queue)


async def message_archive(
    db: Database,
    *,
    ids: Sequence[int],
    leases: Sequence[uuid.UUID],
    statuses: Sequence[str],
    results: Sequence[str | None] | None = None,
    errors: Sequence[str | None] | None = None,
) -> list[FencedRow]:
    """Archive leased messages with their status (validated words) and JSON
    texts, fenced by lease; one row per message."""
    return await db.fetch_tuples(
        "message_archive",
        [
            *fenced_refs(ids, leases),
            array_literal(statuses),
            # All None: sent as NULL (unnest pads it), no list dumped.
            None if results is None else optional_texts(list(results)),
            None if errors is None else optional_texts(list(errors)),
        ],
    )


async def message_delete(
    db: Database, *, ids: Sequence[int], leases: Sequence[uuid.UUID]
) -> list[FencedRow]:
    """Delete leased messages outright, fenced by lease; one row per message."""
    return await db.fetch_tuples("message_delete", fenced_refs(ids, leases))


async def message_extend(
    db: Database, *, ids: Sequence[int], leases: Sequence[uuid.UUID], seconds: float
) -> list[FencedRow]:
    """Keep the leases ``seconds`` more from now; one row per message, with its
    new visible_until when 'ok'."""
    return await db.fetch_tuples("message_extend", [*fenced_refs(ids, leases), seconds])


async def message_release(
    db: Database,
    *,
    ids: Sequence[int],
    leases: Sequence[uuid.UUID],
    delays: Sequence[float],
    errors: Sequence[str | None] | None = None,
    refunds: Sequence[bool] | None = None,
) -> list[FencedRow]:
    """Give leased messages back, visible after their delay, with an optional
    last_error (JSON text) and the attempt refunded where asked."""
    return await db.fetch_tuples(
        "message_release",
        [
            *fenced_refs(ids, leases),
            delays,
            None if errors is None else optional_texts(list(errors)),
            None if refunds is None or not any(refunds) else refunds,
        ],
    )


async def message_fail(
    db: Database,
    *,
    failures: Sequence[Failure],
    backoff_base: float,
    backoff_max: float,
    backoff_jitter: float,
) -> list[FailOutcome]:
    """Retry each failed message after its delay (or the backoff), or archive it
    as dead (max_attempts reached, or ``Failure.dead``); one outcome per
    failure, in order. A message whose lease was lost is left untouched."""
    params = fail_params(failures, backoff_base, backoff_max, backoff_jitter)
    return fail_result(await db.fetch_tuples("message_fail", params))


async def message_cancel(db: Database, *, ids: Sequence[int]) -> list[tuple[int, str, str | None]]:
    """Cancel messages: per distinct id (ascending) its outcome ('cancelled',
    'cancel_requested', 'archived', 'not_found') and archive status."""
    rows = await db.fetch_tuples("message_cancel", [array_literal(ids)])
    return [(int(r[0]), str(r[1]), r[2]) for r in rows]


async def message_set_progress(db: Database, *, id: int, lease: uuid.UUID, progress: str) -> str:
    """Record progress (JSON text), fenced by lease: 'ok', 'cancelled' (recorded;
    a cancel was requested), 'lease_lost' or 'not_found'."""
    rows = await db.fetch_tuples("message_set_progress", [id, lease, progress])
    return str(rows[0][1])


async def message_cancelled(db: Database, *, worker_id: int) -> list[tuple[int, uuid.UUID]]:
    """The messages worker ``worker_id`` holds whose cancellation was requested."""
    rows = await db.fetch_tuples("message_cancelled", [worker_id])
    return [(int(r[0]), r[1]) for r in rows]


async def message_peek(db: Database, *, queue: str, limit: int) -> list[tuple[Message, str]]:
    """Messages in delivery order with their state, without leasing them."""
    rows = await db.fetch("message_peek", [queue, limit], queue=queue)
    return [(Message.from_row(r), r["state"]) for r in rows]


# -- queues ---------------------------------------------------------------------------------


async def queue_create(
    db: Database,
    *,
    name: str,
    visibility_timeout: float,
    max_attempts: int,
    concurrency_limit: int | None = None,
    group_concurrency: int | None = None,
    rate_limit: RateLimit | None = None,
) -> QueueInfo | None:
    """The new queue; None when one of that name exists."""
    rate = rate_limit
    rows = await db.fetch(
        "queue_create",
        [
            name,
            visibility_timeout,
            max_attempts,
            concurrency_limit,
            group_concurrency,
            None if rate is None else rate.count,
            None if rate is None else float(rate.period),
            None if rate is None else rate.per_group,
        ],
        queue=name,
    )
    return QueueInfo.from_row(rows[0]) if rows else None


async def queue_update(db: Database, *, name: str, changes: QueueLimits) -> QueueInfo | None:
    """Change the queue's flow-control limits (only those in ``changes``;
    None removes one); the queue's settings after, None when it is missing."""
    rows = await db.fetch("queue_update", [name, *changes.params()], queue=name)
    return QueueInfo.from_row(rows[0]) if rows else None


async def queue_get(db: Database, *, name: str) -> QueueInfo | None:
    rows = await db.fetch("queue_get", [name], queue=name)
    return QueueInfo.from_row(rows[0]) if rows else None


async def queue_delete(db: Database, *, name: str) -> bool:
    """Delete the queue with its messages (not its archive); False if missing."""
    return bool(await db.fetch("queue_delete", [name], queue=name))


async def queue_purge(db: Database, *, name: str) -> int | None:
    """Delete the queue's messages; how many, or None when the queue is missing."""
    rows = await db.fetch("queue_purge", [name], queue=name)
    return int(rows[0]["purged"]) if rows else None


async def queue_list(db: Database) -> list[QueueInfo]:
    return [QueueInfo.from_row(r) for r in await db.fetch("queue_list")]


async def queue_stats(db: Database, *, name: str) -> QueueStats | None:
    rows = await db.fetch("queue_stats", [name], queue=name)
    return QueueStats.from_row(rows[0]) if rows else None


async def queue_set_paused(db: Database, *, name: str, paused: bool) -> bool:
    """False when the queue is missing."""
    return bool(await db.fetch("queue_set_paused", [name, paused], queue=name))


# -- archive ---------------------------------------------------------------------------------


async def archive_list(
    db: Database, *, queue: str | None, status: str | None, limit: int
) -> list[ArchivedMessage]:
    """Archived messages (of ``queue``, with ``status``; None: all), newest first."""
    rows = await db.fetch("archive_list", [queue, status, limit])
    return [ArchivedMessage.from_row(r) for r in rows]


async def archive_get(
    db: Database, *, ids: Sequence[int], connection: Connection | None = None
) -> list[ArchivedMessage]:
    """The archived rows of ``ids`` (those archived so far)."""
    rows = await db.fetch("archive_get", [array_literal(ids)], connection=connection)
    return [ArchivedMessage.from_row(r) for r in rows]


async def archive_wait(
    db: Database,
    *,
    ids: Sequence[int],
    seconds: float | None,
    connection: Connection | None = None,
) -> list[ArchivedMessage]:
    """Register interest in ``ids`` being archived for ``seconds`` (None:
    unregister), so the archive trigger NOTIFYs; their archived rows so far."""
    rows = await db.fetch("archive_wait", [array_literal(ids), seconds], connection=connection)
    return [ArchivedMessage.from_row(r) for r in rows]


async def archive_prune(db: Database, *, queue: str, batch: int) -> int | None:
    """Delete up to ``batch`` archived messages of ``queue`` older than its
    retention; how many, or None (another session prunes it, or no retention)."""
    rows = await db.fetch_tuples("archive_prune", [queue, batch], queue=queue)
    return None if rows[0][0] is None else int(rows[0][0])


async def queue_set_archive_retention(db: Database, *, name: str, seconds: float | None) -> bool:
    """False when the queue is missing."""
    return bool(await db.fetch("queue_set_archive_retention", [name, seconds], queue=name))


async def archive_purge(
    db: Database, *, older_than: float, queue: str | None, status: str | None
) -> int:
    """Delete archive rows older than ``older_than`` seconds; how many."""
    rows = await db.fetch("archive_purge", [older_than, queue, status])
    return int(rows[0]["purged"])


async def archive_redrive(
    db: Database, *, queue: str, status: str, ids: Sequence[int] | None
) -> list[int]:
    """Put archived messages back on ``queue`` (None ids: every match); their ids."""
    rows = await db.fetch(
        "archive_redrive", [queue, status, None if ids is None else list(ids)], queue=queue
    )
    return [int(r["id"]) for r in rows]


# -- workers ---------------------------------------------------------------------------------


async def worker_register(
    db: Database, *, hostname: str, pid: int, queues: Sequence[str], listening: bool
) -> int:
    """Add a worker row; its id."""
    rows = await db.fetch("worker_register", [hostname, pid, list(queues), listening])
    return int(rows[0]["id"])


async def worker_alive(
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
    rows = await db.fetch("worker_alive", params)
    return Heartbeat(status=rows[0]["status"], registered=rows[0]["registered"])


async def worker_stop(db: Database, *, worker_id: int | None) -> None:
    """Mark the worker stopped (cleanly)."""
    await db.fetch("worker_stop", [worker_id])


async def worker_list(db: Database) -> list[WorkerInfo]:
    return [WorkerInfo.from_row(r) for r in await db.fetch("worker_list")]


async def worker_reap(db: Database, *, dead_after: float, prune_after: float) -> dict[str, int]:
    """Mark workers silent ``dead_after`` seconds dead, prune rows stopped
    ``prune_after`` seconds ago; the counts (``marked_dead``, ``pruned``)."""
    rows = await db.fetch("worker_reap", [dead_after, prune_after])
    return {k: int(v) for k, v in rows[0].items()}


# -- schedules ----------------------------------------------------------------------------------


async def schedule_upsert(
    db: Database,
    *,
    name: str,
    queue: str,
    payload: str,
    headers: str | None,
    priority: int,
    cron: str | None,
    interval: int | None,
    time_zone: str,
    missed: str,
    replace: bool,
) -> tuple[ScheduleInfo, bool] | None:
    """Create schedule ``name`` (``replace``: or make it say this); the row and
    whether it was created. None: it exists and ``replace`` is False."""
    rows = await db.fetch(
        "schedule_upsert",
        [name, queue, payload, headers, priority, cron, interval, time_zone, missed, replace],
        queue=queue,
    )
    return (ScheduleInfo.from_row(rows[0]), bool(rows[0]["created"])) if rows else None


async def schedule_list(db: Database) -> list[ScheduleInfo]:
    return [ScheduleInfo.from_row(r) for r in await db.fetch("schedule_list")]


async def schedule_delete(db: Database, *, name: str) -> bool:
    """False when there is no such schedule."""
    return bool(await db.fetch("schedule_delete", [name]))


async def schedule_set_paused(db: Database, *, name: str, paused: bool) -> bool:
    """False when there is no such schedule."""
    return bool(await db.fetch("schedule_set_paused", [name, paused]))


async def schedule_due(db: Database) -> tuple[list[DueSchedule], datetime.datetime, Any]:
    """The schedules to fire or plan now, the database's now(), and the
    earliest upcoming slot of the others (None: none)."""
    rows = await db.fetch_tuples("schedule_due")
    due = [DueSchedule(*r[:7]) for r in rows if r[0] is not None]
    summary = rows[-1]  # the row with name NULL comes last, always
    return due, summary[7], summary[5]


async def schedule_fire(
    db: Database,
    *,
    name: str,
    slots: Sequence[datetime.datetime],
    next_slot: datetime.datetime,
    expected: datetime.datetime | None,
) -> list[tuple[datetime.datetime, int]]:
    """Enqueue ``slots`` and plan ``next_slot``, if the schedule's next_slot is
    still ``expected``; (slot, message id) per message enqueued."""
    rows = await db.fetch_tuples("schedule_fire", [name, list(slots), next_slot, expected])
    return [(r[0], int(r[1])) for r in rows]


# -- schema: install, verify, grant ------------------------------------------------------------


async def migration_lock(db: Database, *, connection: Connection) -> None:
    """Serialise installs of the schema until ``connection``'s transaction ends."""
    await db.fetch("migration_lock", connection=connection)


async def migration_installed(db: Database, *, connection: Connection | None = None) -> bool:
    """Does the schema's migration ledger exist?"""
    rows = await db.fetch("migration_installed", connection=connection)
    return bool(rows[0]["installed"])


async def migration_list(
    db: Database, *, connection: Connection | None = None
) -> list[AppliedMigration]:
    """The migrations recorded as applied, by version."""
    rows = await db.fetch("migration_list", connection=connection)
    return [AppliedMigration(r["version"], r["name"], r["checksum"]) for r in rows]


async def migration_record(
    db: Database, *, version: int, name: str, checksum: str, connection: Connection
) -> None:
    await db.fetch("migration_record", [version, name, checksum], connection=connection)


async def function_list(
    db: Database, *, names: Sequence[str], connection: Connection | None = None
) -> dict[str, RecordedFunction]:
    """The functions shipped (``names``) or recorded, by name."""
    rows = await db.fetch("function_list", [list(names)], connection=connection)
    return {r["name"]: RecordedFunction(r["name"], r["checksum"], r["present"]) for r in rows}


async def function_record(db: Database, *, name: str, checksum: str, connection: Connection) -> int:
    """Record function ``name`` as (re)created; how many functions of that name
    the schema holds (more than 1: an overload was made by mistake)."""
    rows = await db.fetch("function_record", [name, checksum], connection=connection)
    return int(rows[0]["overloads"])


async def role_grant(
    db: Database,
    *,
    role: str,
    producer: bool,
    consumer: bool,
    admin: bool,
    read_only: bool,
    connection: Connection,
) -> list[str]:
    """The GRANT statements giving ``role`` those privileges ([]: no such role)."""
    rows = await db.fetch(
        "role_grant", [role, producer, consumer, admin, read_only], connection=connection
    )
    return [str(r["statement"]) for r in rows]


async def metrics_scrape(
    db: Database, *, sample: int, dead_after: float, connection: Connection
) -> list[tuple[str, str, str, float]]:
    """Queue health for Prometheus, one statement: rows (metric, queue, label,
    value), looking at most ``sample`` messages per queue; a running worker
    silent for ``dead_after`` seconds counts as stale."""
    rows = await db.fetch_tuples("metrics_scrape", [sample, dead_after], connection=connection)
    return [(str(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]
