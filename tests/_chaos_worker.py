"""A pgqrs.Worker process for the chaos tests (run as a script, killed at will).

Its handler records one *effect* row per run, committed on its own before the
handler returns (the side effect a real job would have), and returns the run's
lease and pid, which pgqrs archives as the result. Comparing effects with the
archive then shows which runs were repeated and which one counted.

Lines on stdout are JSON events: {"event": "ready"} once serving, and one line
per lease_lost job.

    python tests/_chaos_worker.py DSN SCHEMA QUEUE [--concurrency N] [--vt S]
        [--poll-only] [--slow-first S] [--schedule NAME]
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import logging
import os
import signal
import sys
import time
from typing import Any

import psycopg_pool

import pgqrs

#: application_name of the worker's own pgqrs connections (the storm's target).
WORKER_APP = "pgqrs-chaos"
#: application_name of the handler's effect-recording connections.
EFFECTS_APP = "pgqrs-chaos-effects"

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.effects (
    run     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job     bigint NOT NULL,
    lease   uuid NOT NULL,
    attempt integer NOT NULL,
    pid     integer NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dsn")
    ap.add_argument("schema")
    ap.add_argument("queue")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--vt", type=float, default=3.0)
    ap.add_argument("--poll-only", action="store_true")
    ap.add_argument("--slow-first", type=float, default=0.0, help="first attempts sleep this long")
    ap.add_argument("--schedule", help="declare this every-second schedule on QUEUE (and fire it)")
    args = ap.parse_args()
    # Lifecycle lines (serving, stopping, ...) and, on SIGUSR1, every thread's
    # stack: what a test prints when a worker does not stop in time.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    config = pgqrs.Config.from_dsn(
        args.dsn,
        schema=args.schema,
        pool_max_size=4,
        application_name=WORKER_APP,
        connect_timeout=5,
    )
    effects = psycopg_pool.ConnectionPool(
        args.dsn,
        min_size=1,
        max_size=args.concurrency,
        kwargs={"autocommit": True, "application_name": EFFECTS_APP, "prepare_threshold": None},
        open=True,
        timeout=30,
    )
    insert = (
        f'INSERT INTO "{args.schema}".effects (job, lease, attempt, pid) VALUES (%s, %s, %s, %s)'
    )
    worker = pgqrs.Worker(
        config,
        queues=[args.queue],
        concurrency=args.concurrency,
        poll_interval=0.2,
        poll_only=args.poll_only,
        visibility_timeout=args.vt,
        backoff=pgqrs.Backoff(base=0.05, max=0.5),
        grace_period=5,
        heartbeat_interval=1,
    )

    if args.schedule:
        worker.schedule(args.schedule, interval=1, queue=args.queue, payload={"tick": True})

    @worker.handler(args.queue)
    def handle(msg: pgqrs.Message) -> dict[str, Any]:
        with effects.connection() as conn:
            conn.execute(insert, [msg.id, msg.lease, msg.attempts, os.getpid()])
        if args.slow_first and msg.attempts == 1:
            time.sleep(args.slow_first)
            emit(event="handler_done", id=msg.id, attempt=msg.attempts)
        return {"pid": os.getpid(), "lease": str(msg.lease)}

    @worker.on("lease_lost")
    def lost(event: pgqrs.JobEvent) -> None:
        emit(event="lease_lost", id=event.message.id, lease=str(event.message.lease))

    @worker.on("started")
    def started(event: pgqrs.JobEvent) -> None:
        if args.slow_first:
            emit(event="started", id=event.message.id, attempt=event.message.attempts)

    # Until run() installs its own handlers, SIGTERM asks for the same graceful stop.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: worker.stop())
    emit(event="ready", pid=os.getpid())
    try:
        worker.run()
    finally:
        effects.close()
    emit(event="stopped", counters=dataclasses.asdict(worker.counters))
    sys.exit(0)


if __name__ == "__main__":
    main()
