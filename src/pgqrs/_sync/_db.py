# WARNING: generated from src/pgqrs/_async/_db.py by tools/async_to_sync.py.
# Do not edit: change the asyncio source and regenerate.
"""Running named queries on a connection pool, owned or shared."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import BaseRowFactory, dict_row, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from pgqrs._config import Config, mask_dsn
from pgqrs._errors import ConnectionFailed, Error, translate, wrong_connection
from pgqrs._payload import JsonTextLoader
from pgqrs._sql import queries

Row = dict[str, Any]
#: A row as a tuple, for the hot statements (a dict per row costs ~2 us;
#: their column positions are named in pgqrs._ops).
TupleRow = tuple[Any, ...]


class PooledConnection(psycopg.Connection[Any]):
    """A connection of a pool pgqrs made: it keeps one cursor per statement.

    Why: a new cursor builds its adapters map, its transformer and a loader
    per result column again, ~25 us of client CPU for a dequeue's 13 columns
    (measured); psycopg keeps them while a cursor runs the same statement
    again. A pool hands a connection to one caller at a time, so its cursors
    are never used by two at once. Being one also says the connection is
    autocommit (``make_pool`` opens them so), which lets ``Database`` skip the
    commit that a connection of a caller's own pool gets after each call.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Idle cursors by SQL text; one in use is taken out of the dict.
        self.statement_cursors: dict[str, psycopg.RawCursor[Any]] = {}


def make_pool(config: Config) -> ConnectionPool:
    """A pool set up for pgqrs: autocommit, no automatic prepared statements.

    Pass it to several Admin/Producer/Consumer objects to share connections;
    whoever made it opens and closes it.
    """
    return ConnectionPool(
        config.dsn,
        min_size=config.pool_min_size,
        max_size=config.pool_max_size,
        kwargs=config.connect_kwargs(),
        timeout=config.connect_timeout,
        open=False,
        name=f"pgqrs-{config.schema}",
        configure=_configure,
        connection_class=PooledConnection,
    )


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Set up each new pool connection: decode json/jsonb with ``decode_json``
    (text results: pgqrs asks for no binary ones)."""
    conn.adapters.register_loader("json", JsonTextLoader)
    conn.adapters.register_loader("jsonb", JsonTextLoader)


class Database:
    """Runs pgqrs's named queries, one round trip each.

    The pool is opened on first use, so constructors do no I/O.
    """

    def __init__(self, config: Config, pool: ConnectionPool | None = None) -> None:
        self.config = config
        self.queries = queries(config.schema)
        self._owns_pool = pool is None
        self._pool = make_pool(config) if pool is None else pool
        self._opened = pool is not None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    def open(self) -> None:
        if self._opened:
            return
        with self._lock:
            if self._opened:
                return
            if self._closed:
                raise Error("this pgqrs object is closed")
            try:
                self._pool.open(wait=True, timeout=self.config.connect_timeout)
            except PoolTimeout:
                self._pool.close()
                self._pool = make_pool(self.config)
                raise self._explain_connect_failure() from None
            self._opened = True

    def _explain_connect_failure(self) -> Error:
        """Connect once directly, to report the server's own reason."""
        try:
            conn = psycopg.Connection.connect(
                self.config.dsn, **self.config.connect_kwargs()
            )
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        else:
            conn.close()
            reason = "no connection became available in time"
        return ConnectionFailed(
            f"cannot connect to PostgreSQL at {mask_dsn(self.config.dsn)}: {reason}"
        )

    def close(self) -> None:
        self._closed = True
        if self._owns_pool and self._opened:
            self._opened = False
            self._pool.close()

    def fetch(
        self,
        name: str,
        params: list[Any] | None = None,
        *,
        connection: psycopg.Connection[Any] | None = None,
        queue: str | None = None,
    ) -> list[Row]:
        """Run query ``name`` and return its rows (on ``connection`` if given)."""
        return self._fetch(name, params, dict_row, connection, queue)

    def fetch_tuples(
        self,
        name: str,
        params: list[Any] | None = None,
        *,
        connection: psycopg.Connection[Any] | None = None,
        queue: str | None = None,
    ) -> list[TupleRow]:
        """Run query ``name`` and return its rows as tuples (the hot statements)."""
        return self._fetch(name, params, tuple_row, connection, queue)

    def _fetch(
        self,
        name: str,
        params: list[Any] | None,
        row_factory: BaseRowFactory[Any],
        connection: psycopg.Connection[Any] | None,
        queue: str | None,
    ) -> list[Any]:
        sql = self.queries[name]
        try:
            if connection is not None:
                if not isinstance(connection, psycopg.Connection):
                    raise wrong_connection(connection, psycopg.Connection)
                return _execute(connection, sql, params, row_factory)
            self.open()
            # getconn/putconn, not pool.connection(): its `with conn` block
            # (a commit, under the connection's lock) is needless in
            # autocommit and took half of the checkout's client CPU (measured).
            conn = self._pool.getconn()
            try:
                if isinstance(conn, PooledConnection):  # from make_pool: autocommit
                    return _execute_reusing(conn, sql, params, row_factory)
                with conn:  # a caller's pool: commit or roll back as connection() does
                    return _execute(conn, sql, params, row_factory)
            finally:
                self._pool.putconn(conn)
        except psycopg.Error as exc:
            raise translate(exc, schema=self.config.schema, queue=queue) from exc
        except PoolTimeout as exc:
            raise ConnectionFailed(
                f"no connection available within {self.config.connect_timeout}s "
                f"(pool_max_size={self.config.pool_max_size}): {exc}"
            ) from exc

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction (for install and uninstall)."""
        self.open()
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.Error as exc:
            raise translate(exc, schema=self.config.schema) from exc

    def run(
        self, conn: psycopg.Connection[Any], sql: str, params: list[Any] | None = None
    ) -> list[Row]:
        """Run raw ``sql`` on ``conn`` (inside ``transaction()``)."""
        return _execute(conn, sql, params, dict_row)


def _execute(
    conn: psycopg.Connection[Any],
    sql: str,
    params: list[Any] | None,
    row_factory: BaseRowFactory[Any],
) -> list[Any]:
    with psycopg.RawCursor(conn, row_factory=row_factory) as cur:
        return _rows(cur, sql, params)


def _execute_reusing(
    conn: PooledConnection,
    sql: str,
    params: list[Any] | None,
    row_factory: BaseRowFactory[Any],
) -> list[Any]:
    """``_execute`` on the cursor ``conn`` keeps for ``sql`` (see PooledConnection)."""
    cur = conn.statement_cursors.pop(sql, None)
    if cur is None:
        cur = psycopg.RawCursor(conn, row_factory=row_factory)
    elif cur.row_factory is not row_factory:
        cur.row_factory = row_factory
    try:
        rows = _rows(cur, sql, params)
    except BaseException:
        cur.close()
        raise
    if cur.pgresult is not None:
        # The rows are Python objects now: free the result rather than keep
        # it in memory until the statement runs again on this connection.
        cur.pgresult.clear()
    conn.statement_cursors[sql] = cur
    return rows


def _rows(cur: psycopg.RawCursor[Any], sql: str, params: list[Any] | None) -> list[Any]:
    cur.execute(sql, params)
    # Not `cur.description`: it builds a Column object per column (with a
    # type lookup each), which measured ~20% of a one-message call's
    # client CPU; dict_row reads the names from the result itself.
    result = cur.pgresult
    if result is None or result.nfields == 0:
        return []
    return cur.fetchall()
