"""Statement cursors kept per pool connection (pgqrs._sync._db.PooledConnection).

A pool that pgqrs makes keeps one cursor per statement on each connection,
so that psycopg's per-cursor set-up is paid once. These tests pin what must
stay true while it does: each call gets its own rows, a failed statement
leaves no cursor behind, a kept cursor keeps no result, and a caller's own pool
(plain connections, perhaps not autocommit) still commits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import psycopg
import psycopg_pool
import pytest

import pgqrs
from pgqrs._sync._db import PooledConnection


@pytest.fixture
def one_conn_pool(config: pgqrs.Config) -> Iterator[psycopg_pool.ConnectionPool]:
    pool = pgqrs.make_pool(dataclasses.replace(config, pool_min_size=1, pool_max_size=1))
    pool.open()
    yield pool
    pool.close()


@pytest.fixture
def clients(
    config: pgqrs.Config, queue: str, one_conn_pool: psycopg_pool.ConnectionPool
) -> Iterator[tuple[pgqrs.Producer, pgqrs.Consumer]]:
    """A Producer and a Consumer of ``queue`` sharing the pool's one connection."""
    with (
        pgqrs.Producer(config, queue, pool=one_conn_pool) as producer,
        pgqrs.Consumer(config, queue, pool=one_conn_pool) as consumer,
    ):
        yield producer, consumer


def _kept(pool: psycopg_pool.ConnectionPool) -> dict[str, psycopg.RawCursor]:
    """The idle cursors of the pool's one connection, by SQL text."""
    conn = pool.getconn()
    try:
        assert isinstance(conn, PooledConnection)
        return dict(conn.statement_cursors)
    finally:
        pool.putconn(conn)


def test_a_statement_reuses_its_cursor_and_each_call_gets_its_own_rows(
    clients: tuple[pgqrs.Producer, pgqrs.Consumer], one_conn_pool: psycopg_pool.ConnectionPool
) -> None:
    producer, consumer = clients
    producer.enqueue_batch([{"n": n} for n in range(3)])
    dequeue_sql = consumer._db.queries["message_dequeue"]
    first = consumer.dequeue()
    cursor = _kept(one_conn_pool)[dequeue_sql]
    second = consumer.dequeue()
    assert _kept(one_conn_pool)[dequeue_sql] is cursor
    rest = consumer.dequeue(batch=5)
    assert consumer.dequeue(batch=5) == []
    assert first is not None and second is not None
    assert [m.payload["n"] for m in [first, second, *rest]] == [0, 1, 2]
    assert consumer.delete_batch([first, second, *rest]) == [first.id, second.id, rest[0].id]
    assert _kept(one_conn_pool)[dequeue_sql] is cursor


def test_a_kept_cursor_holds_no_result_memory(
    clients: tuple[pgqrs.Producer, pgqrs.Consumer], one_conn_pool: psycopg_pool.ConnectionPool
) -> None:
    producer, consumer = clients
    producer.enqueue_batch([{"n": n, "pad": "x" * 1000} for n in range(1000)])
    dequeue_sql = consumer._db.queries["message_dequeue"]
    assert len(consumer.dequeue(batch=1000)) == 1000
    result = _kept(one_conn_pool)[dequeue_sql].pgresult
    # Freed (libpq's PQclear): nothing of the 1,000 rows stays with the cursor.
    assert result is None or result.pgresult_ptr is None
    producer.enqueue({"n": 1000})
    assert consumer.dequeue() is not None


def test_a_failed_statement_drops_its_cursor_and_the_next_call_works(
    config: pgqrs.Config,
    queue: str,
    one_conn_pool: psycopg_pool.ConnectionPool,
    sql: psycopg.Connection,
) -> None:
    function = f'"{config.schema}".message_dequeue(text, bigint, double precision, bigint)'
    with pgqrs.Consumer(config, queue, pool=one_conn_pool) as consumer:
        dequeue_sql = consumer._db.queries["message_dequeue"]
        assert consumer.dequeue() is None
        assert dequeue_sql in _kept(one_conn_pool)
        sql.execute(f"ALTER FUNCTION {function} RENAME TO message_dequeue_away")
        try:
            with pytest.raises(pgqrs.SchemaNotInstalled):
                consumer.dequeue()
            assert dequeue_sql not in _kept(one_conn_pool)
        finally:
            sql.execute(
                f'ALTER FUNCTION "{config.schema}".message_dequeue_away'
                "(text, bigint, double precision, bigint) RENAME TO message_dequeue"
            )
        assert consumer.dequeue() is None
        assert dequeue_sql in _kept(one_conn_pool)


def test_a_callers_pool_without_autocommit_still_commits(
    config: pgqrs.Config, dsn: str, queue: str, sql: psycopg.Connection
) -> None:
    with psycopg_pool.ConnectionPool(dsn, min_size=1, max_size=1) as pool:
        with pgqrs.Producer(config, queue, pool=pool) as producer:
            sent = producer.enqueue({"n": 1})
        conn = pool.getconn()
        try:
            assert not conn.autocommit and not isinstance(conn, PooledConnection)
        finally:
            pool.putconn(conn)
    row = sql.execute(
        f'SELECT payload FROM "{config.schema}".messages WHERE id = %s', [sent.id]
    ).fetchone()
    assert row == ({"n": 1},)
