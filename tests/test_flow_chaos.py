"""Flow control under SIGKILL chaos (issue 17, "Tests and proofs").

Four worker processes, two Python (tests/_chaos_worker.py) and two Rust
(rust/examples/conformance.rs ``serve``), drain one queue while one of them is
SIGKILLed and restarted about every second. Meanwhile a sampler connection
reads the leased rows continuously:

* ``concurrency_limit=5``, ``group_concurrency=1`` over 50 groups: never more
  than 5 messages leased, never two of one group, every message archived
  exactly once, none lost. The sampler counts a lease as held while
  ``visible_at > now()`` of its own statement: a lease that had already expired
  (its holder was killed) is not held, exactly as the dequeue sees it.
* ``rate_limit="200/s"``: every dequeue is logged (a test-only trigger on the
  lease column, with the clock of the dequeue) and over every window of
  dequeues, their number never exceeds the bucket's allowance
  (200 + 200/s x the window's length).

docs/guarantees.md quotes the figures these print.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import pgqrs
from _chaos_worker import EFFECTS_DDL
from _drivers import build_conformance_binary

pytestmark = [pytest.mark.slow, pytest.mark.direct_only]

WORKER_SCRIPT = Path(__file__).resolve().parent / "_chaos_worker.py"
VT = 1.0
GROUPS = 50
KILL_EVERY = (0.7, 1.3)
TIMEOUT = 120.0  # a guard against a hang, not a speed check


class MixedFleet:
    """Two Python and two Rust worker processes on one queue, killable."""

    def __init__(self, dsn: str, schema: str, queue: str, logs: Path, concurrency: int) -> None:
        self.dsn, self.schema, self.queue, self.logs = dsn, schema, queue, logs
        self.concurrency = concurrency
        self.rust = build_conformance_binary()
        self.kinds = ["python", "rust", "python", "rust"]
        self.n = 0
        self.killed = 0
        self.procs = [self.spawn(k) for k in self.kinds]

    def spawn(self, kind: str) -> subprocess.Popen[bytes]:
        self.n += 1
        out = (self.logs / f"{kind}{self.n}.out").open("wb")
        err = (self.logs / f"{kind}{self.n}.err").open("wb")
        if kind == "python":
            args = [sys.executable, str(WORKER_SCRIPT), self.dsn, self.schema, self.queue]
            args += ["--concurrency", str(self.concurrency), "--vt", str(VT)]
            env = {**os.environ, "PYTHONPATH": str(WORKER_SCRIPT.parent)}
            return subprocess.Popen(args, stdout=out, stderr=err, env=env)
        options = {"concurrency": self.concurrency, "visibility_timeout": VT, "poll_interval": 0.2}
        env = {**os.environ, "PGQRS_DSN": self.dsn, "PGQRS_SCHEMA": self.schema}
        return subprocess.Popen(
            [str(self.rust), "serve", self.queue, "--options", json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            env=env,
        )

    def kill_and_restart(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.killed += 1
        self.procs[i] = self.spawn(self.kinds[i])

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGKILL)
            p.wait()


class Sampler(threading.Thread):
    """Reads the leased rows continuously (its own connection)."""

    def __init__(self, dsn: str, schema: str, queue: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.queue = dsn, queue
        self.sql = (
            f"SELECT coalesce(sum(n), 0)::int, coalesce(max(n), 0)::int FROM ("
            f'SELECT group_key, count(*) AS n FROM "{schema}".messages '
            "WHERE queue = %s AND lease IS NOT NULL AND visible_at > now() "
            "GROUP BY group_key) g"
        )
        self.samples = 0
        self.max_total = 0
        self.max_group = 0
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.done.is_set():
                row = conn.execute(self.sql, [self.queue]).fetchone()
                assert row is not None
                self.samples += 1
                self.max_total = max(self.max_total, row[0])
                self.max_group = max(self.max_group, row[1])


@pytest.fixture
def chaos_schema(server_dsn: str, schema: str) -> Iterator[str]:
    yield schema
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def setup(
    dsn: str, schema: str, jobs: int, *, extra_ddl: str = "", **limits: object
) -> pgqrs.Config:
    config = pgqrs.Config.from_dsn(dsn, schema=schema, pool_max_size=2)
    with pgqrs.Admin(config) as admin:
        admin.install()
        admin.create_queue("flow", visibility_timeout=VT, max_attempts=1000, **limits)  # type: ignore[arg-type]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(EFFECTS_DDL.format(schema=f'"{schema}"'))
        if extra_ddl:
            conn.execute(extra_ddl.format(s=f'"{schema}"'))  # type: ignore[arg-type]
    with pgqrs.Producer(config, "flow") as p:
        payloads = [{"sleep": 0.01, "n": i} for i in range(jobs)]
        groups = [f"g{i % GROUPS}" for i in range(jobs)]
        p.enqueue_batch(payloads, groups=groups)
    return config


def drain(dsn: str, schema: str, jobs: int, fleet: MixedFleet) -> float:
    rng = random.Random()
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(
                f'SELECT (SELECT count(*) FROM "{schema}".archive), '
                f'(SELECT count(*) FROM "{schema}".messages)'
            ).fetchone()
            assert row is not None
            if row == (jobs, 0):
                return time.monotonic() - started
            assert time.monotonic() - started < TIMEOUT, f"not drained: {row}"
            time.sleep(rng.uniform(*KILL_EVERY))  # the chaos cadence
            fleet.kill_and_restart(rng.randrange(len(fleet.procs)))


def audit(dsn: str, schema: str, jobs: int) -> None:
    """Every message archived once, completed; none left."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE status = %s), "
            f'count(DISTINCT group_key) FROM "{schema}".archive',
            ["completed"],
        ).fetchone()
        left = conn.execute(f'SELECT count(*) FROM "{schema}".messages').fetchone()
    assert row == (jobs, jobs, jobs, GROUPS) and left == (0,), (row, left)


def test_concurrency_and_groups_hold_under_sigkill(
    server_dsn: str, chaos_schema: str, tmp_path: Path
) -> None:
    jobs = 1000
    setup(server_dsn, chaos_schema, jobs, concurrency_limit=5, group_concurrency=1)
    sampler = Sampler(server_dsn, chaos_schema, "flow")
    sampler.start()
    fleet = MixedFleet(server_dsn, chaos_schema, "flow", tmp_path, concurrency=4)
    try:
        elapsed = drain(server_dsn, chaos_schema, jobs, fleet)
    finally:
        sampler.done.set()
        fleet.stop()
        sampler.join(10)
    audit(server_dsn, chaos_schema, jobs)
    print(
        f"\nflow chaos: {jobs} jobs over {GROUPS} groups in {elapsed:.1f}s, {fleet.killed} kills, "
        f"{sampler.samples} samples, max leased {sampler.max_total}, "
        f"max leased of one group {sampler.max_group}"
    )
    assert fleet.killed >= 3, "the drain ended before the chaos began"
    assert sampler.samples >= 100
    assert sampler.max_total <= 5
    assert sampler.max_group <= 1
    assert sampler.max_total == 5, "the limit was never reached: the test proved little"


DEQUEUE_LOG = """
CREATE TABLE {s}.dequeue_log (at timestamptz NOT NULL, id bigint NOT NULL);
CREATE FUNCTION {s}.log_dequeue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- dequeued_at is the buckets' clock on a limited queue (read under the
    -- queue's lock): the clock the allowance is defined on. clock_timestamp()
    -- here would be later by however long the statement ran until this row.
    INSERT INTO {s}.dequeue_log VALUES (NEW.dequeued_at, NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER log_dequeue AFTER UPDATE OF lease ON {s}.messages
    FOR EACH ROW WHEN (NEW.lease IS NOT NULL AND NEW.lease IS DISTINCT FROM OLD.lease)
    EXECUTE FUNCTION {s}.log_dequeue();
"""


def test_rate_limit_holds_under_sigkill(server_dsn: str, chaos_schema: str, tmp_path: Path) -> None:
    rate, jobs = 200, 3000
    setup(server_dsn, chaos_schema, jobs, extra_ddl=DEQUEUE_LOG, rate_limit=f"{rate}/s")
    fleet = MixedFleet(server_dsn, chaos_schema, "flow", tmp_path, concurrency=8)
    try:
        elapsed = drain(server_dsn, chaos_schema, jobs, fleet)
    finally:
        fleet.stop()
    audit(server_dsn, chaos_schema, jobs)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        times = [
            r[0].timestamp()
            for r in conn.execute(f'SELECT at FROM "{chaos_schema}".dequeue_log ORDER BY at')
        ]
    # Over every window [times[i], times[j]]: j - i + 1 dequeues at most the
    # bucket's allowance, capacity + rate * length (+1 for the clock's rounding).
    worst = 0.0
    for i in range(len(times)):
        for j in range(i, min(len(times), i + 2 * rate + 50)):
            excess = (j - i + 1) - (rate + rate * (times[j] - times[i]))
            worst = max(worst, excess)
    steady = (len(times) - rate) / (times[-1] - times[0])
    print(
        f"\nrate chaos: {len(times)} dequeues of {jobs} jobs in {elapsed:.1f}s, "
        f"{fleet.killed} kills, steady rate {steady:.1f}/s for a limit of {rate}/s, "
        f"worst window excess {worst:.2f} dequeues"
    )
    assert len(times) >= jobs
    assert worst <= 1.0
    assert fleet.killed >= 3
