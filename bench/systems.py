"""The clients under test, each as make/work/close callables for ``bench.harness``.

Systems: ``pgqrs-sync`` (pgqrs.Producer/Consumer on threads; ``pgqrs-prep`` is
the same with ``Config(prepare_statements=True)``, not run by default), ``pgqrs-async``
(pgqrs.aio on one event loop), ``hand`` (bench.hand on threads) and
``pgbench``. Every client gets its own connection (a pool of one for pgqrs),
opened before the clock starts.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

import pgqrs
import pgqrs.aio
from bench import harness
from bench.hand import HandClient

QUEUE = "bench"
SCHEMA = "pgqrs"

#: The Rust drain (bench/rust), built by scripts/bench when cargo is there.
RUST_BINARY = Path(__file__).resolve().parents[1] / "target" / "release" / "pgqrs-bench"


def rust_available() -> bool:
    return RUST_BINARY.exists()


def payload(i: int) -> dict[str, Any]:
    """The job every workload enqueues: small JSON, as most jobs are."""
    return {"task": "noop", "n": i}


def config(dsn: str, **options: Any) -> pgqrs.Config:
    opts: dict[str, Any] = {"schema": SCHEMA, "pool_min_size": 1, "pool_max_size": 1}
    opts.update(options)
    return pgqrs.Config.from_dsn(dsn, **opts)


@contextlib.contextmanager
def listening_worker(dsn: str) -> Iterator[None]:
    """A workers row saying a running worker LISTENs for QUEUE (no process behind it)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f"INSERT INTO {SCHEMA}.workers (hostname, pid, queues, listening) "
            "VALUES ('bench', 0, ARRAY[%s], true) RETURNING id",
            (QUEUE,),
        ).fetchone()
        assert row is not None
        try:
            yield
        finally:
            conn.execute(f"DELETE FROM {SCHEMA}.workers WHERE id = %s", (row[0],))


# --- enqueue -----------------------------------------------------------------


def enqueue(system: str, dsn: str, clients: int, batch: int, seconds: float) -> harness.Timing:
    """Enqueue for ``seconds`` (one job, or ``batch`` jobs, per statement)."""
    batch_payloads = [payload(i) for i in range(batch)]

    if system in ("hand", "hand+notify", "hand-unprepared", "hand-param", "hand-copy"):

        def make_h(i: int) -> HandClient:
            return HandClient(
                dsn, QUEUE, notify=system == "hand+notify", prepare=system != "hand-unprepared"
            )

        def work_h(c: HandClient) -> int:
            n, end = 0, time.perf_counter() + seconds
            while time.perf_counter() < end:
                if batch == 1:
                    c.enqueue(payload(n))
                elif system == "hand-param":
                    c.enqueue_batch_param(batch_payloads)
                elif system == "hand-copy":
                    c.enqueue_copy(batch_payloads)
                else:
                    c.enqueue_batch(batch_payloads)
                n += batch
            return n

        return harness.threads(clients, make_h, work_h, HandClient.close)

    if system == "pgqrs-sync+listening":
        # As pgqrs-sync, with a running worker that LISTENs registered for the
        # queue, so that every enqueue statement sends its NOTIFY.
        with listening_worker(dsn):
            return enqueue("pgqrs-sync", dsn, clients, batch, seconds)

    if system in ("pgqrs-sync", "pgqrs-prep"):
        cfg = config(dsn, prepare_statements=system == "pgqrs-prep")

        def make_s(i: int) -> pgqrs.Producer:
            p = pgqrs.Producer(cfg, QUEUE)
            p.open()
            return p

        def work_s(p: pgqrs.Producer) -> int:
            n, end = 0, time.perf_counter() + seconds
            while time.perf_counter() < end:
                if batch == 1:
                    p.enqueue(payload(n))
                else:
                    p.enqueue_batch(batch_payloads)
                n += batch
            return n

        return harness.threads(clients, make_s, work_s, pgqrs.Producer.close)

    if system == "pgqrs-async":
        cfg = config(dsn)

        async def make_a(i: int) -> pgqrs.aio.Producer:
            p = pgqrs.aio.Producer(cfg, QUEUE)
            await p.open()
            return p

        async def work_a(p: pgqrs.aio.Producer) -> int:
            n, end = 0, time.perf_counter() + seconds
            while time.perf_counter() < end:
                if batch == 1:
                    await p.enqueue(payload(n))
                else:
                    await p.enqueue_batch(batch_payloads)
                n += batch
            return n

        return harness.tasks(clients, make_a, work_a, pgqrs.aio.Producer.close)

    raise ValueError(system)


# --- drain -------------------------------------------------------------------


def drain(
    system: str, dsn: str, clients: int, batch: int, complete: str, target: int
) -> harness.Timing:
    """Dequeue and ``complete`` ('archive' or 'delete') ``target`` jobs (the
    Rust client's CPU time is not measured: NaN)."""
    quota = harness.Quota(target)

    if system == "pgqrs-rust":
        out = subprocess.run(
            [str(RUST_BINARY), dsn, str(clients), str(batch), complete, str(target)],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pgqrs-bench (Rust) failed:\n{out.stderr[-2000:]}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
        return harness.Timing(int(data["jobs"]), float(data["seconds"]), float("nan"))

    if system in ("hand", "hand-unprepared"):

        def make_h(i: int) -> HandClient:
            return HandClient(dsn, QUEUE, prepare=system == "hand")

        def work_h(c: HandClient) -> int:
            n = 0
            while quota.more():
                rows = c.lease(batch)
                if not rows:
                    break
                if complete == "delete":
                    c.delete(rows)
                else:
                    c.archive(rows)
                n += len(rows)
                quota.add(len(rows))
            return n

        return harness.threads(clients, make_h, work_h, HandClient.close)

    if system in ("pgqrs-sync", "pgqrs-prep"):
        cfg = config(dsn, prepare_statements=system == "pgqrs-prep")

        def make_s(i: int) -> pgqrs.Consumer:
            c = pgqrs.Consumer(cfg, QUEUE)
            c.open()
            return c

        def work_s(c: pgqrs.Consumer) -> int:
            n = 0
            while quota.more():
                if batch == 1:
                    m = c.dequeue()
                    if m is None:
                        break
                    if complete == "delete":
                        c.delete(m)
                    else:
                        c.archive(m)
                    got = 1
                else:
                    ms = c.dequeue(batch=batch)
                    if not ms:
                        break
                    if complete == "delete":
                        c.delete_batch(ms)
                    else:
                        c.archive_batch(ms)
                    got = len(ms)
                n += got
                quota.add(got)
            return n

        return harness.threads(clients, make_s, work_s, pgqrs.Consumer.close)

    if system == "pgqrs-async":
        cfg = config(dsn)

        async def make_a(i: int) -> pgqrs.aio.Consumer:
            c = pgqrs.aio.Consumer(cfg, QUEUE)
            await c.open()
            return c

        async def work_a(c: pgqrs.aio.Consumer) -> int:
            n = 0
            while quota.more():
                if batch == 1:
                    m = await c.dequeue()
                    if m is None:
                        break
                    if complete == "delete":
                        await c.delete(m)
                    else:
                        await c.archive(m)
                    got = 1
                else:
                    ms = await c.dequeue(batch=batch)
                    if not ms:
                        break
                    if complete == "delete":
                        await c.delete_batch(ms)
                    else:
                        await c.archive_batch(ms)
                    got = len(ms)
                n += got
                quota.add(got)
            return n

        return harness.tasks(clients, make_a, work_a, pgqrs.aio.Consumer.close)

    raise ValueError(system)
