"""A held snapshot: a REPEATABLE READ transaction left open while 50,000 jobs flow.

While any snapshot is open, vacuum cannot remove the dead rows archived
messages leave behind, and every dequeue walks past more of them. The queue
must keep working regardless, and ``queue_stats`` must name the backend that
holds cleanup back so an operator can find (and end) it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgqrs

JOBS = 50_000
ENQUEUE_BATCH = 1_000
DEQUEUE_BATCH = 500
CONSUMERS = 2


@pytest.mark.direct_only
def test_queue_keeps_working_under_a_held_snapshot(
    admin: pgqrs.Admin, queue: str, server_dsn: str
) -> None:
    schema = admin.config.schema
    with psycopg.connect(server_dsn, autocommit=True) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        seen_before = holder.execute(f'SELECT count(*) FROM "{schema}".messages').fetchone()
        holder_pid = holder.execute("SELECT pg_backend_pid()").fetchone()
        assert holder_pid is not None

        started = time.monotonic()
        with pgqrs.Producer(admin.config, queue) as p:
            for start in range(0, JOBS, ENQUEUE_BATCH):
                p.enqueue_batch([{"n": i} for i in range(start, start + ENQUEUE_BATCH)])

        stats = admin.queue_stats(queue)
        assert stats.ready == JOBS
        assert stats.oldest_xmin_pid == holder_pid[0]
        assert stats.oldest_xmin_age is not None and stats.oldest_xmin_age >= 0
        assert cli_stats(server_dsn, schema, queue)["oldest_xmin_pid"] == holder_pid[0]

        archived: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def consume() -> None:
            try:
                with pgqrs.Consumer(admin.config, queue) as c:
                    while msgs := c.dequeue(batch=DEQUEUE_BATCH):
                        done = c.archive_batch(msgs)
                        with lock:
                            archived.extend(done)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=consume) for _ in range(CONSUMERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        assert not errors, errors
        assert len(archived) == len(set(archived)) == JOBS

        stats = admin.queue_stats(queue)
        assert (stats.ready, stats.in_flight, stats.delayed) == (0, 0, 0)
        assert stats.archived == {"completed": JOBS}
        # Still held: the snapshot sees none of it, and stats still point at it.
        assert stats.oldest_xmin_pid == holder_pid[0]
        again = holder.execute(f'SELECT count(*) FROM "{schema}".messages').fetchone()
        assert again == seen_before
        dead_rows = _dead_tuples(holder, schema)
        holder.execute("COMMIT")

    after = admin.queue_stats(queue)
    assert after.oldest_xmin_pid != holder_pid[0]
    print(f"{JOBS} jobs through a held snapshot in {elapsed:.1f}s; dead rows kept: {dead_rows}")


def cli_stats(dsn: str, schema: str, queue: str) -> dict[str, Any]:
    """``pgqrs queue stats QUEUE --json``, as an operator would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQRS_")}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("pgqrs")),
            "--dsn",
            dsn,
            "--schema",
            schema,
            "--json",
            "queue",
            "stats",
            queue,
        ],
        capture_output=True,
        text=True,
        env={**env, "PGQRS_EMBEDDED": "0"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _dead_tuples(conn: psycopg.Connection[Any], schema: str) -> int | None:
    row = conn.execute(
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'messages'",
        [schema],
    ).fetchone()
    return None if row is None else int(row[0])
