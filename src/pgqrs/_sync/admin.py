# WARNING: generated from src/pgqrs/_async/admin.py by tools/async_to_sync.py.
# Do not edit: change the asyncio source and regenerate.
"""Admin: install the schema, manage queues, inspect and maintain the archive."""

from __future__ import annotations

import datetime

from pgqrs._sync._base import Client
from pgqrs._config import DEFAULT_MAX_ATTEMPTS, DEFAULT_VISIBILITY_TIMEOUT
from pgqrs._errors import DatabaseError, InvalidArgument, QueueExists, queue_not_found
from pgqrs._models import ArchivedMessage, Message, QueueInfo, QueueStats, VerifyReport, WorkerInfo
from pgqrs._ops import Seconds, batch_size, seconds
from pgqrs._sql import functions, migrations, render, script
from pgqrs._validate import validate_queue_name, validate_role_name, validate_status

#: Seconds without a heartbeat after which ``reap_workers`` marks a worker dead.
DEFAULT_WORKER_DEAD_AFTER = 60.0
#: Seconds after which stopped and dead worker rows are pruned.
DEFAULT_WORKER_PRUNE_AFTER = 7 * 24 * 3600.0


class Admin(Client):
    """Schema and queue management. Safe to run through pgBouncer in transaction mode."""

    def install(self) -> list[str]:
        """Apply the migrations the database lacks, in order, then (re)create the
        server functions whose file changed; return what was applied
        (``NNNN_name`` for a migration, ``function name`` for a function).

        Runs in one transaction under a transaction-level advisory lock, so
        concurrent installs serialise and a failure leaves nothing half-done.
        A no-op (returning []) when the schema is up to date.
        """
        applied: list[str] = []
        with self._db.transaction() as conn:
            q = self._db.queries
            self._db.run(conn, q["migration_lock"])
            self._db.run(conn, script("schema_bootstrap", self.config.schema))
            done = {r["version"] for r in self._db.run(conn, q["migration_list"])}
            for migration in migrations():
                if migration.version in done:
                    continue
                self._db.run(conn, render(migration.text, self.config.schema))
                self._db.run(
                    conn,
                    q["migration_record"],
                    [migration.version, migration.name, migration.checksum],
                )
                applied.append(f"{migration.version:04d}_{migration.name}")
            shipped = functions()
            recorded = {
                r["name"]: r
                for r in self._db.run(
                    conn, q["function_list"], [[f.name for f in shipped]]
                )
            }
            for function in shipped:
                row = recorded[function.name]
                if row["checksum"] == function.checksum and row["present"]:
                    continue
                self._db.run(conn, render(function.text, self.config.schema))
                rows = self._db.run(
                    conn, q["function_record"], [function.name, function.checksum]
                )
                if rows[0]["overloads"] != 1:
                    raise DatabaseError(
                        f"install stopped (nothing was changed): {function.name} now has "
                        f"{rows[0]['overloads']} signatures in schema {self.config.schema!r}; "
                        "sql/functions/ changed its arguments without a migration that "
                        "drops the old one (see sql/README.md)"
                    )
                applied.append(function.label)
        return applied

    def uninstall(self) -> bool:
        """Drop what pgqrs created in the schema: the functions its ledger names,
        its tables and ledgers, and the schema when nothing else is left in it.

        Returns False, dropping nothing, when pgqrs is not installed in the
        schema (no migration ledger): a shared schema such as ``public`` may
        hold an application's own tables. Never CASCADE: a user object that
        depends on a pgqrs object (a view on the archive) makes it fail, and
        roll back, naming that object.
        """
        with self._db.transaction() as conn:
            self._db.run(conn, self._db.queries["migration_lock"])
            rows = self._db.run(conn, self._db.queries["migration_installed"])
            if not rows[0]["installed"]:
                return False
            self._db.run(conn, script("uninstall", self.config.schema))
        return True

    def verify(self) -> VerifyReport:
        """Compare the database's ledgers with the migrations and functions shipped here."""
        shipped = {m.version: m for m in migrations()}
        latest = max(shipped, default=0)
        shipped_functions = functions()
        rows = self._db.fetch("migration_installed")
        if not rows[0]["installed"]:
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
        applied = {r["version"]: r for r in self._db.fetch("migration_list")}
        recorded = {
            r["name"]: r
            for r in self._db.fetch("function_list", [[f.name for f in shipped_functions]])
        }
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
                if recorded[f.name]["checksum"] is None or not recorded[f.name]["present"]
            ],
            modified=[
                f"{v:04d}_{m.name}"
                for v, m in shipped.items()
                if v in applied and applied[v]["checksum"] != m.checksum
            ]
            + [
                f.label
                for f in shipped_functions
                if recorded[f.name]["present"]
                and recorded[f.name]["checksum"] not in (None, f.checksum)
            ],
            unknown=[f"{v:04d}_{r['name']}" for v, r in applied.items() if v not in shipped]
            + [f"function {name}" for name in sorted(recorded) if name not in known],
        )

    def create_queue(
        self,
        name: str,
        *,
        visibility_timeout: Seconds = DEFAULT_VISIBILITY_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        exist_ok: bool = False,
    ) -> QueueInfo:
        """Create queue ``name``; with ``exist_ok`` return the existing one instead of raising."""
        validate_queue_name(name)
        vt = seconds(visibility_timeout, "visibility_timeout", allow_zero=False)
        if (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int)
            or not 1 <= max_attempts < 2**31
        ):
            raise InvalidArgument(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        rows = self._db.fetch("queue_create", [name, vt, max_attempts], queue=name)
        if rows:
            return QueueInfo.from_row(rows[0])
        if not exist_ok:
            raise QueueExists(f"queue {name!r} already exists (pass exist_ok=True to reuse it)")
        return self.get_queue(name)

    def get_queue(self, name: str) -> QueueInfo:
        validate_queue_name(name)
        rows = self._db.fetch("queue_get", [name], queue=name)
        if not rows:
            raise queue_not_found(name)
        return QueueInfo.from_row(rows[0])

    def delete_queue(self, name: str) -> None:
        """Delete a queue with its waiting and in-flight messages (its archive stays)."""
        validate_queue_name(name)
        if not self._db.fetch("queue_delete", [name], queue=name):
            raise queue_not_found(name)

    def purge_queue(self, name: str) -> int:
        """Delete every waiting, delayed and in-flight message; return how many."""
        validate_queue_name(name)
        rows = self._db.fetch("queue_purge", [name], queue=name)
        if not rows:
            raise queue_not_found(name)
        return int(rows[0]["purged"])

    def list_queues(self) -> list[QueueInfo]:
        return [QueueInfo.from_row(r) for r in self._db.fetch("queue_list")]

    def queue_stats(self, name: str) -> QueueStats:
        validate_queue_name(name)
        rows = self._db.fetch("queue_stats", [name], queue=name)
        if not rows:
            raise queue_not_found(name)
        return QueueStats.from_row(rows[0])

    def pause_queue(self, name: str) -> None:
        """Stop deliveries from ``name`` (enqueues still work) until resume_queue."""
        self._set_paused(name, True)

    def resume_queue(self, name: str) -> None:
        self._set_paused(name, False)

    def _set_paused(self, name: str, paused: bool) -> None:
        validate_queue_name(name)
        if not self._db.fetch("queue_set_paused", [name, paused], queue=name):
            raise queue_not_found(name)

    def peek(self, queue: str, limit: int = 10) -> list[tuple[Message, str]]:
        """Messages in delivery order with their state, without leasing them."""
        validate_queue_name(queue)
        rows = self._db.fetch(
            "message_peek", [queue, batch_size(limit, "limit")], queue=queue
        )
        return [(Message.from_row(r), r["state"]) for r in rows]

    def list_archive(
        self, queue: str | None = None, *, status: str | None = None, limit: int = 100
    ) -> list[ArchivedMessage]:
        """Archived messages, newest first."""
        if queue is not None:
            validate_queue_name(queue)
        if status is not None:
            validate_status(status)
        rows = self._db.fetch("archive_list", [queue, status, batch_size(limit, "limit")])
        return [ArchivedMessage.from_row(r) for r in rows]

    def purge_archive(
        self,
        *,
        older_than: Seconds | datetime.timedelta,
        queue: str | None = None,
        status: str | None = None,
    ) -> int:
        """Delete archived messages archived more than ``older_than`` ago; return how many."""
        age = seconds(older_than, "older_than")
        if queue is not None:
            validate_queue_name(queue)
        if status is not None:
            validate_status(status)
        rows = self._db.fetch("archive_purge", [age, queue, status])
        return int(rows[0]["purged"])

    def redrive(
        self, queue: str, *, status: str = "dead", ids: list[int] | None = None
    ) -> list[int]:
        """Put archived (by default dead) messages back on ``queue``; return their ids."""
        validate_queue_name(queue)
        validate_status(status)
        self.get_queue(queue)
        rows = self._db.fetch("archive_redrive", [queue, status, ids], queue=queue)
        return sorted(r["id"] for r in rows)

    def list_workers(self) -> list[WorkerInfo]:
        return [WorkerInfo.from_row(r) for r in self._db.fetch("worker_list")]

    def reap_workers(
        self,
        *,
        dead_after: Seconds = DEFAULT_WORKER_DEAD_AFTER,
        prune_after: Seconds = DEFAULT_WORKER_PRUNE_AFTER,
    ) -> dict[str, int]:
        """Mark silent workers dead and prune old rows. Leases need no reaping."""
        rows = self._db.fetch(
            "worker_reap", [seconds(dead_after, "dead_after"), seconds(prune_after, "prune_after")]
        )
        return {k: int(v) for k, v in rows[0].items()}

    def grant(
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
        params = [role, producer, consumer, admin, read_only]
        with self._db.transaction() as conn:
            rows = self._db.run(conn, self._db.queries["role_grant"], params)
            if not rows:
                raise InvalidArgument(
                    f"role {role!r} does not exist (create it first: CREATE ROLE ...)"
                )
            for row in rows:
                self._db.run(conn, row["statement"])
        return [str(r["statement"]) for r in rows]
