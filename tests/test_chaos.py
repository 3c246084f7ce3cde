"""Chaos: worker processes SIGKILLed, the database restarted, connections
terminated, a holder frozen past its lease. Every run ends with the same
audit (tests/_chaos.py): each job archived ``completed`` exactly once, none
lost, none left leased, and every repeated handler run explained.

Default sizes finish in a few minutes on 2 cores; PGQRS_CHAOS_LONG=1 runs longer.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import pgqrs
from _chaos import LONG, ChaosServer, Fleet, audit, counts, setup_queue, wait_until
from _chaos_worker import WORKER_APP
from pgqrs._worker.defaults import DEFAULT_COMPLETION_BACKLOG

#: Jobs drained while workers are SIGKILLed.
KILL_JOBS = 100_000 if LONG else 20_000
KILL_WORKERS = 4
KILL_EVERY = (0.5, 1.5)  # seconds between kills, uniformly drawn
#: Jobs drained across a database restart.
RESTART_JOBS = 30_000 if LONG else 6_000
#: Seconds of pg_terminate_backend storm, and its jobs.
STORM_SECONDS = 120.0 if LONG else 30.0
STORM_JOBS = 60_000 if LONG else 12_000
DRAIN_TIMEOUT = 1800.0 if LONG else 300.0
CONCURRENCY = 8
VT = 3.0

pytestmark = pytest.mark.direct_only


@pytest.fixture(scope="module")
def chaos() -> Iterator[ChaosServer]:
    server = ChaosServer()
    yield server
    server.close()


@pytest.fixture
def chaos_schema(chaos: ChaosServer, schema: str) -> Iterator[str]:
    yield schema
    with psycopg.connect(chaos.dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def drained(dsn: str, schema: str, queue: str, jobs: int) -> bool:
    archived, left = counts(dsn, schema, queue)
    return archived == jobs and left == 0


def test_sigkill_drain(chaos: ChaosServer, chaos_schema: str, tmp_path: Path) -> None:
    """SIGKILL a random worker about every second and restart it; nothing is lost
    and the only repeated runs are those of killed workers."""
    ids = setup_queue(chaos.dsn, chaos_schema, "chaos", KILL_JOBS, vt=VT)
    fleet = Fleet(
        chaos.dsn,
        chaos_schema,
        "chaos",
        tmp_path,
        size=KILL_WORKERS,
        concurrency=CONCURRENCY,
        vt=VT,
    )
    rng = random.Random()
    started = time.monotonic()
    try:
        while not drained(chaos.dsn, chaos_schema, "chaos", KILL_JOBS):
            assert time.monotonic() - started < DRAIN_TIMEOUT, fleet.stderr()
            time.sleep(rng.uniform(*KILL_EVERY))  # the chaos cadence, not a wait for a condition
            if counts(chaos.dsn, chaos_schema, "chaos")[0] < KILL_JOBS:
                fleet.kill_and_restart(rng.randrange(KILL_WORKERS))
        elapsed = time.monotonic() - started
    finally:
        codes = fleet.stop()
    assert codes == [0] * KILL_WORKERS, fleet.stderr()
    result = audit(chaos.dsn, chaos_schema, "chaos", ids)
    kills = len(fleet.killed)
    print(
        f"\nSIGKILL drain: {KILL_JOBS} jobs in {elapsed:.1f}s, {kills} kills, "
        f"{len(result.duplicated_jobs)} jobs run twice or more ({result.extra_runs} extra runs), "
        f"{result.redelivered} redelivered"
    )
    assert kills >= 3, "the drain ended before the chaos began: raise KILL_JOBS"
    assert result.redelivered > 0, "no kill ever hit a leased job: the test proved nothing"
    # Repeats come only from killed holders, at most the jobs each one had run
    # without its outcome written: handlers running plus the completion backlog.
    assert result.unarchived_run_pids <= set(fleet.killed), result.unarchived_run_pids
    assert result.extra_runs <= kills * (CONCURRENCY + DEFAULT_COMPLETION_BACKLOG)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_database_restart_mid_drain(
    chaos: ChaosServer, chaos_schema: str, tmp_path: Path, mode: str
) -> None:
    """``pg_ctl restart -m fast|immediate`` mid-drain: workers recover on their own."""
    ids = setup_queue(chaos.dsn, chaos_schema, "restart", RESTART_JOBS, vt=VT)
    fleet = Fleet(chaos.dsn, chaos_schema, "restart", tmp_path, size=2, concurrency=CONCURRENCY)
    try:
        wait_until(
            lambda: counts(chaos.dsn, chaos_schema, "restart")[0] >= RESTART_JOBS // 4,
            DRAIN_TIMEOUT,
            "a quarter of the jobs",
        )
        before = counts(chaos.dsn, chaos_schema, "restart")[0]
        chaos.restart(mode)
        wait_until(
            lambda: drained(chaos.dsn, chaos_schema, "restart", RESTART_JOBS),
            DRAIN_TIMEOUT,
            "the drain to finish after the restart",
        )
        assert fleet.alive(), fleet.stderr()
    finally:
        codes = fleet.stop()
    assert codes == [0, 0], fleet.stderr()
    assert before < RESTART_JOBS, "the drain finished before the restart: raise RESTART_JOBS"
    result = audit(chaos.dsn, chaos_schema, "restart", ids)
    print(f"\nrestart -m {mode} after {before} jobs: {result.extra_runs} extra runs")


def test_terminate_backend_storm(chaos: ChaosServer, chaos_schema: str, tmp_path: Path) -> None:
    """pg_terminate_backend on every pgqrs connection, again and again, for STORM_SECONDS."""
    ids = setup_queue(chaos.dsn, chaos_schema, "storm", STORM_JOBS, vt=VT)
    fleet = Fleet(chaos.dsn, chaos_schema, "storm", tmp_path, size=2, concurrency=CONCURRENCY)
    terminated = 0
    storm_end = time.monotonic() + STORM_SECONDS
    rng = random.Random()
    try:
        with psycopg.connect(chaos.dsn, autocommit=True) as conn:
            while time.monotonic() < storm_end and not drained(
                chaos.dsn, chaos_schema, "storm", STORM_JOBS
            ):
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE application_name = %s",
                    [WORKER_APP],
                ).fetchone()
                terminated += int(row[0]) if row else 0
                time.sleep(rng.uniform(0.05, 0.5))  # the storm's cadence
        during = counts(chaos.dsn, chaos_schema, "storm")[0]
        wait_until(
            lambda: drained(chaos.dsn, chaos_schema, "storm", STORM_JOBS),
            DRAIN_TIMEOUT,
            "the drain to finish after the storm",
        )
        assert fleet.alive(), fleet.stderr()
    finally:
        codes = fleet.stop()
    assert codes == [0, 0], fleet.stderr()
    result = audit(chaos.dsn, chaos_schema, "storm", ids)
    print(
        f"\nstorm: {terminated} backends terminated, {during} jobs done during it, "
        f"{result.extra_runs} extra runs"
    )
    assert terminated >= 10


def test_stale_worker_sigstop_cannot_settle(
    chaos: ChaosServer, chaos_schema: str, tmp_path: Path
) -> None:
    """A worker frozen (SIGSTOP) past its lease, then resumed (SIGCONT), is fenced out:
    the worker that took the message over archives it, and that result stands."""
    vt = 1.0
    ids = setup_queue(chaos.dsn, chaos_schema, "stale", 1, vt=vt)
    (tmp_path / "a").mkdir()
    a = Fleet(
        chaos.dsn,
        chaos_schema,
        "stale",
        tmp_path / "a",
        size=1,
        concurrency=1,
        vt=vt,
        slow_first=3 * vt,
    )
    holder = a.procs[0]
    b: Fleet | None = None
    try:
        wait_until(lambda: any(e["event"] == "started" for e in a.events()), 60, "A to start")
        holder.send_signal(signal.SIGSTOP)
        wait_until(lambda: lease_expired(chaos.dsn, chaos_schema, ids[0]), 30, "A's lease to end")
        (tmp_path / "b").mkdir()
        b = Fleet(chaos.dsn, chaos_schema, "stale", tmp_path / "b", size=1, concurrency=1, vt=30)
        wait_until(lambda: drained(chaos.dsn, chaos_schema, "stale", 1), 60, "B to archive it")
        holder.send_signal(signal.SIGCONT)
        wait_until(
            lambda: any(e["event"] == "handler_done" for e in a.events()), 60, "A's handler to end"
        )
    finally:
        holder.send_signal(signal.SIGCONT)
        codes = a.stop() + (b.stop() if b else [])
    assert codes == [0, 0], a.stderr()
    # A ran the handler to its end but wrote no outcome: it was fenced out.
    (a_counters,) = [e["counters"] for e in a.events() if e["event"] == "stopped"]
    assert a_counters["processed"] == 1 and a_counters["completed"] == 0, a_counters
    assert a_counters["lease_lost"] == 1, a_counters
    assert [e["id"] for e in a.events() if e["event"] == "lease_lost"] == ids
    result = audit(chaos.dsn, chaos_schema, "stale", ids)
    assert result.runs == 2 and result.duplicated_jobs == ids
    with psycopg.connect(chaos.dsn) as conn:
        row = conn.execute(
            f'SELECT result, attempts FROM "{chaos_schema}".archive WHERE id = %s', [ids[0]]
        ).fetchone()
    assert row is not None
    assert row[0]["pid"] == b.procs[0].pid and row[1] == 2  # B's result stands


def lease_expired(dsn: str, schema: str, msg_id: int) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT visible_at < now() FROM "{schema}".messages WHERE id = %s', [msg_id]
        ).fetchone()
    return bool(row and row[0])


STALE_CONSUMER = textwrap.dedent(
    """
    import json, sys
    import pgqrs
    config = pgqrs.Config.from_dsn(sys.argv[1], schema=sys.argv[2], pool_max_size=1)
    with pgqrs.Consumer(config, "stale") as c:
        msg = c.dequeue(visibility_timeout=float(sys.argv[3]))
        print(json.dumps({"id": msg.id, "lease": str(msg.lease)}), flush=True)
        sys.stdin.readline()   # the test SIGSTOPs us here, and resumes us later
        outcome = {}
        for action, call in [
            ("extend", lambda: c.extend(msg, 60)),
            ("delete", lambda: c.delete(msg)),
            ("release", lambda: c.release(msg)),
            ("archive", lambda: c.archive(msg, result={"by": "stale"})),
        ]:
            try:
                call()
                outcome[action] = "ok"
            except pgqrs.LeaseExpired as exc:
                outcome[action] = type(exc).__name__
        print(json.dumps(outcome), flush=True)
    """
)


def test_stale_consumer_sigstop_cannot_extend_delete_or_archive(
    chaos: ChaosServer, chaos_schema: str
) -> None:
    """The same with a plain Consumer, for each settling call (extend, delete,
    release, archive): every one is refused and the new holder's work stands."""
    vt = 0.5
    setup_queue(chaos.dsn, chaos_schema, "stale", 1, vt=vt)
    proc = subprocess.Popen(
        [sys.executable, "-c", STALE_CONSUMER, chaos.dsn, chaos_schema, str(vt)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        leased = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: lease_expired(chaos.dsn, chaos_schema, leased["id"]), 30, "lease end")
        config = pgqrs.Config.from_dsn(chaos.dsn, schema=chaos_schema, pool_max_size=1)
        with pgqrs.Consumer(config, "stale") as b:
            taken = b.dequeue(visibility_timeout=60)
            assert taken is not None and taken.id == leased["id"]
            proc.send_signal(signal.SIGCONT)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            outcome = json.loads(proc.stdout.readline())
            assert outcome == dict.fromkeys(
                ["extend", "delete", "release", "archive"], "LeaseExpired"
            )
            b.archive(taken, result={"by": "new holder"})
    finally:
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    with pgqrs.Admin(config) as admin:
        (row,) = admin.list_archive("stale")
    assert row.result == {"by": "new holder"} and row.attempts == 2
