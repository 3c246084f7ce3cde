"""The framework recipes of docs/frameworks.md, run as written against PostgreSQL:
Django (psycopg 3 backend), SQLAlchemy 2 (sync and async sessions), FastAPI."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import pgqrs
from _docblocks import block_under, run_block


@pytest.fixture
def app_env(
    monkeypatch: pytest.MonkeyPatch, dsn: str, schema: str, admin: pgqrs.Admin
) -> Iterator[str]:
    """What a recipe's application sees: PGQRS_DSN/PGQRS_SCHEMA, an ``accounts``
    table (in the test's schema, first on the search path) and the emails queue."""
    admin.create_queue("emails")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{schema}".accounts (id bigserial PRIMARY KEY, email text UNIQUE)'
        )
    monkeypatch.setenv("PGQRS_DSN", dsn)
    monkeypatch.setenv("PGQRS_SCHEMA", schema)
    monkeypatch.setenv("PGQRS_EMBEDDED", "0")
    yield schema


def accounts(dsn: str, schema: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(f'SELECT email FROM "{schema}".accounts ORDER BY id')]


def test_django_enqueues_in_atomic_and_runs_the_worker_command(
    app_env: str, dsn: str, admin: pgqrs.Admin
) -> None:
    import django
    from django.conf import settings

    info = conninfo_to_dict(dsn)
    if not settings.configured:
        settings.configure(
            DATABASES={
                "default": {
                    "ENGINE": "django.db.backends.postgresql",
                    "NAME": info.get("dbname", "postgres"),
                    "USER": info.get("user", ""),
                    "PASSWORD": info.get("password", ""),
                    "HOST": info.get("host", ""),
                    "PORT": info.get("port", ""),
                    "OPTIONS": {"options": f"-c search_path={app_env}"},
                }
            },
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    from django.db import connection

    connection.close()  # a fresh connection, on this test's search path
    connection.settings_dict["OPTIONS"] = {"options": f"-c search_path={app_env}"}
    recipe = run_block(block_under("frameworks.md", "Django"), "django_recipe")
    try:
        account = recipe.signup("ann@example.com")
        with pytest.raises(RuntimeError):
            from django.db import transaction

            with transaction.atomic():
                recipe.signup("bob@example.com")  # its own atomic nests: a savepoint
                raise RuntimeError("the request failed after signup")
        assert accounts(dsn, app_env) == ["ann@example.com"]
        assert admin.queue_stats("emails").ready == 1  # Bob's mail rolled back with him

        command = recipe.Command()
        command.handle(concurrency=2, until_empty=True)
        [row] = admin.list_archive("emails")
        assert (row.status, row.result) == (
            "completed",
            f"welcome mail to ann@example.com (account {account})",
        )
        with pytest.raises(pgqrs.InvalidArgument, match="connection= takes an open psycopg"):
            recipe.send_welcome.enqueue(account_id=1, email="x", connection=connection)
    finally:
        recipe.tasks.close()
        connection.close()


def test_sqlalchemy_sync_and_async_sessions(
    app_env: str, dsn: str, admin: pgqrs.Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    sep = "&" if "?" in dsn else "?"
    url = dsn.replace("postgresql://", "postgresql+psycopg://", 1).replace(
        "postgres://", "postgresql+psycopg://", 1
    )
    monkeypatch.setenv("DATABASE_URL", f"{url}{sep}options=-csearch_path%3D{app_env}")
    recipe = run_block(block_under("frameworks.md", "SQLAlchemy"), "sqlalchemy_recipe")
    try:
        first = recipe.signup("ann@example.com")
        with pytest.raises(Exception, match="duplicate key"):
            recipe.signup("ann@example.com")  # the insert fails: no second mail either

        async def in_async() -> int:
            account: int = await recipe.signup_async("cy@example.com")
            with pytest.raises(Exception, match="duplicate key"):
                await recipe.signup_async("cy@example.com")
            await recipe.async_engine.dispose()
            await recipe.tasks.aclose()
            return account

        second = asyncio.run(in_async())
        assert accounts(dsn, app_env) == ["ann@example.com", "cy@example.com"]
        worker = pgqrs.Worker(recipe.tasks.config, tasks=recipe.tasks)
        worker.run(until_empty=True)
        results = sorted(r.result for r in admin.list_archive("emails"))
        assert results == [
            f"welcome mail to ann@example.com (account {first})",
            f"welcome mail to cy@example.com (account {second})",
        ]
    finally:
        recipe.tasks.close()
        recipe.engine.dispose()


def test_fastapi_lifespan_runs_the_worker_in_the_app(app_env: str, admin: pgqrs.Admin) -> None:
    from fastapi.testclient import TestClient

    recipe = run_block(block_under("frameworks.md", "FastAPI"), "fastapi_recipe")
    sys.modules.pop("fastapi_recipe", None)
    with TestClient(recipe.app) as client:  # runs the lifespan: the worker starts
        worker: Any = recipe.app.state.worker
        ids = [client.post("/signup", params={"email": f"u{i}@example.com"}).json()["job"]
               for i in range(3)]
        worker.signals.outcome_written.wait_blocking(
            lambda: worker.counters.completed == 3, timeout=30
        )
    # The lifespan's exit stopped the worker and closed the pool.
    rows = {r.id: r.result for r in admin.list_archive("emails")}
    assert [rows[i] for i in ids] == [f"welcome mail to u{i}@example.com" for i in range(3)]
