"""Schedules under chaos (issue 16, docs/guarantees.md "Schedules: exactly once
per slot"): four worker processes, two Python (tests/_chaos_worker.py) and two
Rust (rust/examples/conformance.rs serve), declare the same every-second
schedule and fire it for about 60 s while one of them is SIGKILLed and
restarted every few seconds and the database is restarted once. Workers ran
the whole time, so every slot from the first to the last must have exactly
one message: no slot twice, no slot missing (the slots of the database's
downtime are fired late, within the catch-up window).
"""

from __future__ import annotations

import datetime
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

import pgqrs
from _chaos import WORKER_SCRIPT, ChaosServer, wait_until
from _chaos_worker import EFFECTS_DDL
from _drivers import build_conformance_binary

SCHEDULE = "chaos-tick"
QUEUE = "ticks"
RUN_SECONDS = 60.0
KILL_EVERY = 4.0
DB_RESTART_AT = 30.0


class Proc:
    """One worker process, Python or Rust."""

    def __init__(self, kind: str, dsn: str, schema: str, logs: Path, n: int, rust: Path) -> None:
        self.kind = kind
        out = (logs / f"{kind}{n}.out").open("wb")
        err = (logs / f"{kind}{n}.err").open("wb")
        if kind == "py":
            env = {**os.environ, "PYTHONPATH": str(WORKER_SCRIPT.parent)}
            cmd = [sys.executable, str(WORKER_SCRIPT), dsn, schema, QUEUE, "--schedule", SCHEDULE]
        else:
            env = {**os.environ, "PGQRS_DSN": dsn, "PGQRS_SCHEMA": schema}
            options = (
                '{"poll_interval": 0.2, "grace_period": 5, "heartbeat_interval": 1, '
                f'"schedules": [{{"name": "{SCHEDULE}", "interval": 1, "queue": "{QUEUE}", '
                '"payload": {"tick": true}}]}'
            )
            cmd = [str(rust), "serve", QUEUE, "--options", options]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int | None:
        if self.kind == "py":
            self.proc.send_signal(signal.SIGTERM)
        else:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the serve command's graceful stop
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def slot_counts(dsn: str, schema: str) -> Counter[datetime.datetime]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"""SELECT h->>'pgqrs-slot' FROM (
                    SELECT headers AS h FROM "{schema}".messages
                    UNION ALL SELECT headers FROM "{schema}".archive) x
                WHERE h->>'pgqrs-schedule' = %s""",
            (SCHEDULE,),
        ).fetchall()
    return Counter(datetime.datetime.fromisoformat(r[0].replace("Z", "+00:00")) for r in rows)


@pytest.mark.slow
def test_every_second_schedule_fires_each_slot_once_under_chaos(tmp_path: Path) -> None:
    rust = build_conformance_binary()
    server = ChaosServer()
    schema = "chaos_sched"
    procs: list[Proc] = []
    try:
        config = pgqrs.Config.from_dsn(server.dsn, schema=schema, pool_max_size=2)
        with pgqrs.Admin(config) as admin:
            admin.install()
            admin.create_queue(QUEUE, visibility_timeout=3, max_attempts=1000)
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(EFFECTS_DDL.format(schema=f'"{schema}"'))
        numbers = itertools.count()
        kinds = ["py", "rs", "py", "rs"]
        procs = [Proc(k, server.dsn, schema, tmp_path, next(numbers), rust) for k in kinds]
        wait_until(lambda: len(slot_counts(server.dsn, schema)) >= 2, 60, "the first slots")
        start = time.monotonic()
        kills = 0
        restarted_db = False
        victim = itertools.cycle(range(len(procs)))
        next_kill = start + KILL_EVERY
        while time.monotonic() - start < RUN_SECONDS:
            now = time.monotonic()
            if not restarted_db and now - start >= DB_RESTART_AT:
                server.restart("fast")
                restarted_db = True
            if now >= next_kill:
                i = next(victim)
                procs[i].kill()
                procs[i] = Proc(procs[i].kind, server.dsn, schema, tmp_path, next(numbers), rust)
                kills += 1
                next_kill = now + KILL_EVERY
            time.sleep(0.2)
        # Let the last restarted workers catch up, then stop all gracefully.
        time.sleep(3)
        codes = [p.stop() for p in procs]
        counts = slot_counts(server.dsn, schema)
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.kill()
        server.close()
    slots = sorted(counts)
    twice = {s: n for s, n in counts.items() if n > 1}
    expected = int((slots[-1] - slots[0]).total_seconds()) + 1
    gaps = [
        a + datetime.timedelta(seconds=k)
        for a, b in itertools.pairwise(slots)
        for k in range(1, int((b - a).total_seconds()))
    ]
    print(
        f"schedule chaos: {len(slots)} slots over {expected} s, {sum(counts.values())} messages, "
        f"{len(twice)} twice, {len(gaps)} missing, {kills} SIGKILLs, 1 database restart, "
        f"exit codes {codes}"
    )
    assert restarted_db and kills >= 10
    assert not twice, f"slots enqueued more than once: {twice}"
    assert not gaps, f"slots never enqueued while workers ran: {gaps}"
    assert len(slots) == expected
    assert codes == [0, 0, 0, 0], codes
