"""Admin: install the schema, manage queues, inspect and maintain the archive."""

from __future__ import annotations

import datetime
from typing import Any

from pgqrs._async import _calls as calls
from pgqrs._async._base import Client
from pgqrs._async._wait import message_id, wait_archived, wait_timeout
from pgqrs._config import DEFAULT_MAX_ATTEMPTS, DEFAULT_VISIBILITY_TIMEOUT
from pgqrs._errors import (
    AlreadyArchived,
    DatabaseError,
    InvalidArgument,
    MessageNotFound,
    QueueExists,
    ScheduleExists,
    queue_not_found,
    schedule_not_found,
)
from pgqrs._models import (
    ArchivedMessage,
    Message,
    QueueInfo,
    QueueStats,
    RateLimit,
    ScheduleInfo,
    VerifyReport,
    WorkerInfo,
)
from pgqrs._ops import UNSET, QueueLimits, Seconds, batch_size, seconds
from pgqrs._ops import rate_limit as to_rate_limit
from pgqrs._schedule import schedule_spec, valid_schedule_name
from pgqrs._sql import functions, migrations, render, script
from pgqrs._validate import (
    ArchiveStatus,
    validate_limit,
    validate_queue_name,
    validate_role_name,
    validate_status,
)

#: Seconds without a heartbeat after which ``reap_workers`` marks a worker dead.
DEFAULT_WORKER_DEAD_AFTER = 60.0
#: Seconds after which stopped and dead worker rows are pruned.
DEFAULT_WORKER_PRUNE_AFTER = 7 * 24 * 3600.0


class Admin(Client):
    """Schema and queue management. Safe to run through pgBouncer in transaction mode."""

    async def install(self) -> list[str]:
        """Apply the migrations the database lacks, in order, then (re)create the
        server functions whose file changed; return what was applied
        (``NNNN_name`` for a migration, ``function name`` for a function).

        Runs in one transaction under a transaction-level advisory lock, so
        concurrent installs serialise and a failure leaves nothing half-done.
        A no-op (returning []) when the schema is up to date.
        """
        applied: list[str] = []
        db = self._db
        async with db.transaction() as conn:
            await calls.migration_lock(db, connection=conn)
            await db.run(conn, script("schema_bootstrap", self.config.schema))
            done = {m.version for m in await calls.migration_list(db, connection=conn)}
            for migration in migrations():
                if migration.version in done:
                    continue
                await db.run(conn, render(migration.text, self.config.schema))
                await calls.migration_record(
                    db,
                    version=migration.version,
                    name=migration.name,
                    checksum=migration.checksum,
                    connection=conn,
                )
                applied.append(f"{migration.version:04d}_{migration.name}")
            shipped = functions()
            recorded = await calls.function_list(
                db, names=[f.name for f in shipped], connection=conn
            )
            for function in shipped:
                row = recorded[function.name]
                if row.checksum == function.checksum and row.present:
                    continue
                await db.run(conn, render(function.text, self.config.schema))
                overloads = await calls.function_record(
                    db, name=function.name, checksum=function.checksum, connection=conn
                )
                if overloads != 1:
                    raise DatabaseError(
                        f"install stopped (nothing was changed): {function.name} now has "
                        f"{overloads} signatures in schema {self.config.schema!r}; "
                        "sql/functions/ changed its arguments without a migration that "
                        "drops the old one (see sql/README.md)"
                    )
                applied.append(function.label)
        return applied

    async def uninstall(self) -> bool:
        """Drop what pgqrs created in the schema: the functions its ledger names,
        its tables and ledgers, and the schema when nothing else is left in it.

        Returns False, dropping nothing, when pgqrs is not installed in the
        schema (no migration ledger): a shared schema such as ``public`` may
        hold an application's own tables. Never CASCADE: a user object that
        depends on a pgqrs object (a view on the archive) makes it fail, and
        roll back, naming that object.
        """
        async with self._db.transaction() as conn:
            await calls.migration_lock(self._db, connection=conn)
            if not await calls.migration_installed(self._db, connection=conn):
                return False
            await self._db.run(conn, script("uninstall", self.config.schema))
        return True

    async def verify(self) -> VerifyReport:
        """Compare the database's ledgers with the migrations and functions shipped here."""
        shipped = {m.version: m for m in migrations()}
        latest = max(shipped, default=0)
        shipped_functions = functions()
        if not await calls.migration_installed(self._db):
            return VerifyReport(
                self.config.schema,
                False,
                0,
                latest,
                [f"{v:04d}_{m.name}" for v, m in shipped.items()]
                + [f.label for f in shipped_functions],
                [],
                [],
            )
        applied = {m.version: m for m in await calls.migration_list(self._db)}
        recorded = await calls.function_list(self._db, names=[f.name for f in shipped_functions])
        known = {f.name for f in shipped_functions}
        return VerifyReport(
            schema=self.config.schema,
            installed=True,
            current_version=max(applied, default=0),
            latest_version=latest,
            missing=[f"{v:04d}_{m.name}" for v, m in shipped.items() if v not in applied]
            + [
                f.label
                for f in shipped_functions
                if recorded[f.name].checksum is None or not recorded[f.name].present
            ],
            modified=[
                f"{v:04d}_{m.name}"
                for v, m in shipped.items()
                if v in applied and applied[v].checksum != m.checksum
            ]
            + [
                f.label
                for f in shipped_functions
                if recorded[f.name].present and recorded[f.name].checksum not in (None, f.checksum)
            ],
            unknown=[f"{v:04d}_{r.name}" for v, r in applied.items() if v not in shipped]
            + [f"function {name}" for name in sorted(recorded) if name not in known],
        )

    async def create_queue(
        self,
        name: str,
        *,
        visibility_timeout: Seconds = DEFAULT_VISIBILITY_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        exist_ok: bool = False,
        concurrency_limit: int | None = None,
        group_concurrency: int | None = None,
        rate_limit: str | RateLimit | None = None,
        archive_retention: Seconds | datetime.timedelta | None = None,
    ) -> QueueInfo:
        """Create queue ``name``; with ``exist_ok`` return the existing one instead of raising.

        Flow control (docs/flow-control.md), enforced by the dequeue across
        every consumer and worker: ``concurrency_limit`` messages leased at
        once at most, ``group_concurrency`` per message group, and a
        ``rate_limit`` such as ``"100/s"`` or ``RateLimit(100, 1, per_group=True)``.

        ``archive_retention`` (seconds or a timedelta; None: keep for ever):
        running workers delete the queue's archived messages older than that
        (see ``set_archive_retention``). With ``exist_ok`` and an existing
        queue, a retention given is set on it too.
        """
        validate_queue_name(name)
        limit = validate_limit(concurrency_limit, "concurrency_limit")
        per_group = validate_limit(group_concurrency, "group_concurrency")
        rate = to_rate_limit(rate_limit)
        keep = _retention(archive_retention)
        vt = seconds(visibility_timeout, "visibility_timeout", allow_zero=False)
        if (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int)
            or not 1 <= max_attempts < 2**31
        ):
            raise InvalidArgument(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        created = await calls.queue_create(
            self._db,
            name=name,
            visibility_timeout=vt,
            max_attempts=max_attempts,
            concurrency_limit=limit,
            group_concurrency=per_group,
            rate_limit=rate,
        )
        if created is None and not exist_ok:
            raise QueueExists(f"queue {name!r} already exists (pass exist_ok=True to reuse it)")
        if keep is not None:
            # A second statement (queue_create keeps its signature): idempotent.
            await self.set_archive_retention(name, keep)
        return created if created is not None else await self.get_queue(name)

    async def set_archive_retention(
        self, name: str, retention: Seconds | datetime.timedelta | None
    ) -> None:
        """Keep queue ``name``'s archived messages for ``retention`` (seconds or
        a timedelta; None: for ever). Running workers enforce it: they delete
        older archived messages in small batches (``archive_prune``), one
        worker at a time per queue."""
        validate_queue_name(name)
        keep = _retention(retention)
        if not await calls.queue_set_archive_retention(self._db, name=name, seconds=keep):
            raise queue_not_found(name)

    async def cancel(self, id: int) -> str:
        """Cancel message ``id``; return what happened: ``"cancelled"`` (it was
        waiting or delayed: archived now with status ``cancelled``) or
        ``"cancel_requested"`` (it is running: its worker stops the handler and
        archives it as ``cancelled``; ``wait(id)`` tells when).

        ``AlreadyArchived`` (naming its status) when it already ended;
        ``MessageNotFound`` for an unknown id.
        """
        outcome = (await self.cancel_batch([id]))[message_id(id)]
        if outcome == "not_found":
            raise MessageNotFound(f"no message {id}: nothing to cancel", id)
        if outcome.startswith("archived:"):
            status = outcome.split(":", 1)[1]
            raise AlreadyArchived(
                f"message {id} is already archived with status {status!r}: nothing to cancel",
                id,
                status,
            )
        return outcome

    async def cancel_batch(self, ids: list[int]) -> dict[int, str]:
        """Cancel messages ``ids`` in one statement; per id: ``"cancelled"``,
        ``"cancel_requested"``, ``"archived:<status>"`` (it had already ended)
        or ``"not_found"``. Never raises for one id's state."""
        if not isinstance(ids, (list, tuple)):
            raise InvalidArgument(f"ids must be a list of message ids, got {ids!r}")
        checked = [message_id(i) for i in ids]
        batch_size(max(len(checked), 1), "number of ids")
        if not checked:
            return {}
        rows = await calls.message_cancel(self._db, ids=checked)
        return {
            i: (f"archived:{status}" if outcome == "archived" else outcome)
            for i, outcome, status in rows
        }

    async def wait(self, id: int, *, timeout: float | None = None) -> ArchivedMessage:
        """Wait until message ``id`` is archived and return its archived row
        (status, result or error, progress). Woken by NOTIFY, with a poll
        behind it (so it works through pgBouncer in transaction mode too).
        ``WaitTimeout`` (a ``TimeoutError``) after ``timeout`` seconds; None
        waits for ever. Waiting holds one connection of its own."""
        checked = message_id(id)
        return await wait_archived(self._db, checked, wait_timeout(timeout))

    async def update_queue(
        self,
        name: str,
        *,
        concurrency_limit: int | None = UNSET,
        group_concurrency: int | None = UNSET,
        rate_limit: str | RateLimit | None = UNSET,
        archive_retention: Seconds | datetime.timedelta | None = UNSET,
    ) -> QueueInfo:
        """Change queue ``name``'s flow-control limits (and its archive
        retention); return its settings.

        Only the settings passed change; ``None`` removes one. Limits take
        effect at the next dequeue; messages already leased count against a
        new limit. ``archive_retention`` as in ``set_archive_retention``.
        """
        validate_queue_name(name)
        keep = UNSET if archive_retention is UNSET else _retention(archive_retention)
        changes = QueueLimits(
            concurrency_limit=concurrency_limit
            if concurrency_limit is UNSET
            else validate_limit(concurrency_limit, "concurrency_limit"),
            group_concurrency=group_concurrency
            if group_concurrency is UNSET
            else validate_limit(group_concurrency, "group_concurrency"),
            rate_limit=rate_limit if rate_limit is UNSET else to_rate_limit(rate_limit),
        )
        if keep is not UNSET:
            await self.set_archive_retention(name, keep)
        info = await calls.queue_update(self._db, name=name, changes=changes)
        if info is None:
            raise queue_not_found(name)
        return info

    async def get_queue(self, name: str) -> QueueInfo:
        validate_queue_name(name)
        info = await calls.queue_get(self._db, name=name)
        if info is None:
            raise queue_not_found(name)
        return info

    async def delete_queue(self, name: str) -> None:
        """Delete a queue with its waiting and in-flight messages (its archive stays)."""
        validate_queue_name(name)
        if not await calls.queue_delete(self._db, name=name):
            raise queue_not_found(name)

    async def purge_queue(self, name: str) -> int:
        """Delete every waiting, delayed and in-flight message; return how many."""
        validate_queue_name(name)
        purged = await calls.queue_purge(self._db, name=name)
        if purged is None:
            raise queue_not_found(name)
        return purged

    async def list_queues(self) -> list[QueueInfo]:
        return await calls.queue_list(self._db)

    async def queue_stats(self, name: str) -> QueueStats:
        validate_queue_name(name)
        stats = await calls.queue_stats(self._db, name=name)
        if stats is None:
            raise queue_not_found(name)
        return stats

    async def pause_queue(self, name: str) -> None:
        """Stop deliveries from ``name`` (enqueues still work) until resume_queue."""
        await self._set_paused(name, True)

    async def resume_queue(self, name: str) -> None:
        await self._set_paused(name, False)

    async def _set_paused(self, name: str, paused: bool) -> None:
        validate_queue_name(name)
        if not await calls.queue_set_paused(self._db, name=name, paused=paused):
            raise queue_not_found(name)

    async def peek(self, queue: str, limit: int = 10) -> list[tuple[Message, str]]:
        """Messages in delivery order with their state, without leasing them."""
        validate_queue_name(queue)
        return await calls.message_peek(self._db, queue=queue, limit=batch_size(limit, "limit"))

    async def list_archive(
        self, queue: str | None = None, *, status: ArchiveStatus | None = None, limit: int = 100
    ) -> list[ArchivedMessage]:
        """Archived messages, newest first."""
        if queue is not None:
            validate_queue_name(queue)
        if status is not None:
            validate_status(status)
        return await calls.archive_list(
            self._db, queue=queue, status=status, limit=batch_size(limit, "limit")
        )

    async def purge_archive(
        self,
        *,
        older_than: Seconds | datetime.timedelta,
        queue: str | None = None,
        status: ArchiveStatus | None = None,
    ) -> int:
        """Delete archived messages archived more than ``older_than`` ago; return how many."""
        age = seconds(older_than, "older_than")
        if queue is not None:
            validate_queue_name(queue)
        if status is not None:
            validate_status(status)
        return await calls.archive_purge(self._db, older_than=age, queue=queue, status=status)

    async def redrive(
        self, queue: str, *, status: ArchiveStatus = "dead", ids: list[int] | None = None
    ) -> list[int]:
        """Put archived (by default dead) messages back on ``queue``; return their ids."""
        validate_queue_name(queue)
        validate_status(status)
        await self.get_queue(queue)
        return sorted(await calls.archive_redrive(self._db, queue=queue, status=status, ids=ids))

    async def create_schedule(
        self,
        name: str,
        *,
        queue: str,
        payload: Any,
        cron: str | None = None,
        interval: Seconds | datetime.timedelta | None = None,
        time_zone: str = "UTC",
        missed: str = "skip",
        headers: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> ScheduleInfo:
        """Create schedule ``name``: enqueue ``payload`` on ``queue`` at each slot
        of ``cron`` (5 fields or @hourly/@daily/@weekly/@monthly/@yearly, in
        ``time_zone``) or every ``interval`` seconds; ``missed``: "skip" or
        "latest" for slots missed while no worker ran (docs/schedules.md).

        Running workers fire it (those that run schedules); ScheduleExists
        when the name is taken (a worker's ``schedule()`` replaces instead)."""
        spec = schedule_spec(
            name,
            queue=queue,
            payload=payload,
            cron=cron,
            interval=interval,
            time_zone=time_zone,
            missed=missed,
            headers=headers,
            priority=priority,
            max_bytes=self.config.max_payload_bytes,
        )
        done = await calls.schedule_upsert(
            self._db,
            name=spec.name,
            queue=spec.queue,
            payload=spec.payload,
            headers=spec.headers,
            priority=spec.priority,
            cron=spec.cron,
            interval=spec.interval,
            time_zone=spec.time_zone,
            missed=spec.missed,
            replace=False,
        )
        if done is None:
            raise ScheduleExists(
                f"schedule {name!r} already exists (delete_schedule({name!r}) first to change it)"
            )
        return done[0]

    async def list_schedules(self) -> list[ScheduleInfo]:
        return await calls.schedule_list(self._db)

    async def delete_schedule(self, name: str) -> None:
        """Delete a schedule (the messages it enqueued stay)."""
        valid_schedule_name(name)
        if not await calls.schedule_delete(self._db, name=name):
            raise schedule_not_found(name)

    async def pause_schedule(self, name: str, paused: bool = True) -> None:
        """Stop firing ``name`` (``paused=False``: resume it, from its next slot
        after now: the slots of the pause never fire)."""
        valid_schedule_name(name)
        if not isinstance(paused, bool):
            raise InvalidArgument(f"paused must be True or False, got {paused!r}")
        if not await calls.schedule_set_paused(self._db, name=name, paused=paused):
            raise schedule_not_found(name)

    async def resume_schedule(self, name: str) -> None:
        await self.pause_schedule(name, paused=False)
    async def _message_wait(self, id: int, timeout: float | None) -> ArchivedMessage:
        return await self.wait(id, timeout=timeout)

    async def list_workers(self) -> list[WorkerInfo]:
        return await calls.worker_list(self._db)

    async def reap_workers(
        self,
        *,
        dead_after: Seconds = DEFAULT_WORKER_DEAD_AFTER,
        prune_after: Seconds = DEFAULT_WORKER_PRUNE_AFTER,
    ) -> dict[str, int]:
        """Mark silent workers dead and prune old rows. Leases need no reaping."""
        dead = seconds(dead_after, "dead_after")
        prune = seconds(prune_after, "prune_after")
        return await calls.worker_reap(self._db, dead_after=dead, prune_after=prune)

    async def grant(
        self,
        role: str,
        *,
        producer: bool = False,
        consumer: bool = False,
        admin: bool = False,
        read_only: bool = False,
    ) -> list[str]:
        """Give an existing ``role`` least privileges on this schema; return the GRANTs run.

        A role acts only through pgqrs's server functions: it gets USAGE on the
        schema and EXECUTE on the functions of its job, never a privilege on a
        table (admin and read-only may also read the migration ledgers, for
        ``verify``). ``producer`` may enqueue only; ``consumer`` may dequeue
        and settle messages (archive, delete, extend, release, fail) and run
        workers; ``read_only`` may list queues, stats, workers and the archive
        and peek at messages (dashboards, metrics); ``admin`` may do all that
        and manage queues and the archive. Installing and migrating stay with
        the schema's owner. Idempotent; kinds combine.
        """
        validate_role_name(role)
        flags = (
            ("producer", producer),
            ("consumer", consumer),
            ("admin", admin),
            ("read_only", read_only),
        )
        for flag, value in flags:
            if not isinstance(value, bool):
                raise InvalidArgument(f"{flag} must be True or False, got {value!r}")
        if not (producer or consumer or admin or read_only):
            raise InvalidArgument(
                "nothing to grant: pass producer=True, consumer=True, admin=True "
                "and/or read_only=True"
            )
        async with self._db.transaction() as conn:
            statements = await calls.role_grant(
                self._db,
                role=role,
                producer=producer,
                consumer=consumer,
                admin=admin,
                read_only=read_only,
                connection=conn,
            )
            if not statements:
                raise InvalidArgument(
                    f"role {role!r} does not exist (create it first: CREATE ROLE ...)"
                )
            for statement in statements:
                await self._db.run(conn, statement)
        return statements


def _retention(value: Seconds | datetime.timedelta | None) -> float | None:
    """An archive retention as seconds (> 0), None for "keep for ever"."""
    if value is None:
        return None
    return seconds(value, "archive_retention", allow_zero=False)
