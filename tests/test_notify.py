"""Enqueue statements NOTIFY only when a running, listening worker serves the queue.

Why it matters: PostgreSQL serializes the commits of notifying transactions,
so a NOTIFY nobody hears costs concurrent producers their group commit
(sql/functions/queue_lock.sql). Each test listens on the schema's channel
and ends with a NOTIFY of its own, the sentinel: notifications arrive in
commit order, so when the sentinel comes first, the enqueue before it sent
none. No sleeps.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

import pgqrs
import pgqrs.aio
from test_worker import started, stopped

Conn = psycopg.Connection[tuple[Any, ...]]

pytestmark = pytest.mark.direct_only  # LISTEN needs a session of its own

SENTINEL = "sentinel: nothing before me"


@pytest.fixture
def listener(server_dsn: str, schema: str) -> Iterator[Conn]:
    conn = psycopg.connect(server_dsn, autocommit=True)
    conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(f"{schema}.enqueue")))
    yield conn
    conn.close()


def heard(listener: Conn, sql: Conn, schema: str) -> list[str]:
    """Payloads received on the enqueue channel up to the sentinel sent now."""
    sql.execute("SELECT pg_notify(%s, %s)", (f"{schema}.enqueue", SENTINEL))
    payloads: list[str] = []
    for n in listener.notifies(timeout=10):
        if n.payload == SENTINEL:
            return payloads
        payloads.append(n.payload)
    raise AssertionError(f"the sentinel never arrived (heard {payloads})")


def add_worker(
    sql: Conn,
    schema: str,
    queues: list[str],
    *,
    listening: bool,
    status: str = "running",
) -> None:
    sql.execute(
        pgsql.SQL(
            "INSERT INTO {}.workers (hostname, pid, queues, listening, status) "
            "VALUES (%s, %s, %s, %s, %s)"
        ).format(pgsql.Identifier(schema)),
        (socket.gethostname(), os.getpid(), queues, listening, status),
    )


def enqueue_both_ways(config: pgqrs.Config, queue: str) -> None:
    """One plain enqueue (message_insert) and one with a dedup key (message_enqueue)."""
    with pgqrs.Producer(config, queue) as p:
        p.enqueue({"n": 1})
        p.enqueue({"n": 2}, dedup_key=f"k-{os.urandom(4).hex()}")


def test_no_notify_without_a_listening_worker(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str, listener: Conn
) -> None:
    other = f"{queue}_other"
    with pgqrs.Admin(config) as admin:
        admin.create_queue(other)
    add_worker(sql, schema, [queue], listening=False)  # polls only
    add_worker(sql, schema, [queue], listening=True, status="stopped")
    add_worker(sql, schema, [queue], listening=True, status="dead")
    add_worker(sql, schema, [other], listening=True)  # listens, for another queue
    enqueue_both_ways(config, queue)
    assert heard(listener, sql, schema) == []


def test_notify_when_a_running_worker_listens_for_the_queue(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str, listener: Conn
) -> None:
    add_worker(sql, schema, ["some_queue", queue], listening=True)
    enqueue_both_ways(config, queue)
    assert heard(listener, sql, schema) == [queue, queue]
    # A batch is one statement: one NOTIFY.
    with pgqrs.Producer(config, queue) as p:
        p.enqueue_batch([{"n": i} for i in range(5)])
    assert heard(listener, sql, schema) == [queue]


async def test_a_worker_row_says_whether_it_listens(
    queue: str, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """A LISTEN worker registers as listening; a poll-only one does not."""
    for poll_only in (False, True):
        worker = pgqrs.aio.Worker(config, [queue], poll_only=poll_only, handle_signals=False)
        worker.handler(queue)(lambda m: None)
        task = await started(worker)
        row = sql.execute(
            pgsql.SQL("SELECT listening FROM {}.workers WHERE id = %s").format(
                pgsql.Identifier(schema)
            ),
            (worker.id,),
        ).fetchone()
        await stopped(worker, task)
        assert row == (not poll_only,), f"poll_only={poll_only}"
