"""The Rust crate's own tests and the seed's Rust Quick Example, on the session server.

``cargo test`` needs a real PostgreSQL: it gets the pytest session's server
through ``PGQRS_TEST_DSN`` (each Rust test makes and drops its own schema).
``cargo fmt --check`` and ``cargo clippy`` run in ``scripts/test`` before pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

RUST_DIR = Path(__file__).resolve().parents[1] / "rust"
#: Seconds allowed for a cargo command, including the first compilation.
CARGO_TIMEOUT = 1200


def cargo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("cargo")
    assert exe, "cargo is required for the Rust tests (install the Rust toolchain)"
    return subprocess.run(
        [exe, *args],
        cwd=RUST_DIR,
        env={**os.environ, "CARGO_TERM_COLOR": "never", **env},
        capture_output=True,
        text=True,
        timeout=CARGO_TIMEOUT,
    )


def _drop_rust_test_schemas(sql: psycopg.Connection[tuple[object, ...]]) -> None:
    """Drop schemas left by Rust tests that failed before their own cleanup."""
    rows = sql.execute(
        r"SELECT nspname FROM pg_namespace WHERE nspname ~ '^r[0-9]+_[0-9]+$'"
    ).fetchall()
    for (name,) in rows:
        sql.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_cargo_test(dsn: str, sql: psycopg.Connection[tuple[object, ...]]) -> None:
    try:
        proc = cargo("test", "--all-targets", env={"PGQRS_TEST_DSN": dsn})
        assert proc.returncode == 0, f"cargo test failed:\n{proc.stdout}\n{proc.stderr}"
        assert "test result: ok" in proc.stdout
        doc = cargo("test", "--doc", env={"PGQRS_TEST_DSN": dsn})
        assert doc.returncode == 0, f"cargo test --doc failed:\n{doc.stdout}\n{doc.stderr}"
    finally:
        _drop_rust_test_schemas(sql)


@pytest.fixture
def fresh_default_schema(sql: psycopg.Connection[tuple[object, ...]]) -> Iterator[None]:
    """The Quick Example installs into the default schema ``pgqrs``: start without it."""
    sql.execute('DROP SCHEMA IF EXISTS "pgqrs" CASCADE')
    yield
    sql.execute('DROP SCHEMA IF EXISTS "pgqrs" CASCADE')


@pytest.mark.usefixtures("fresh_default_schema")
def test_seed_quick_example_runs(dsn: str, sql: psycopg.Connection[tuple[object, ...]]) -> None:
    proc = cargo("run", "--quiet", "--example", "quickstart", env={"PGQRS_DSN": dsn})
    assert proc.returncode == 0, f"quickstart failed:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.splitlines() == [
        "Enqueued message: 1",
        'Processing: {"task":"send_email","to":"user@example.com"}',
    ]
    rows = sql.execute("SELECT id, status FROM pgqrs.archive").fetchall()
    assert rows == [(1, "completed")]


def test_quick_example_is_the_seeds_verbatim() -> None:
    """examples/quickstart.rs is the seed's Rust Quick Example, DSN line aside."""
    candidates = [RUST_DIR.parents[1] / "shared", Path("/work/shared")]
    seeds = [
        c / "seed" / "pgqrs-overview.md"
        for c in candidates
        if (c / "seed" / "pgqrs-overview.md").exists()
    ]
    if not seeds:
        pytest.skip("the seed document (shared/seed/pgqrs-overview.md) is not on this machine")
    seed = seeds[0]
    example = (RUST_DIR / "examples" / "quickstart.rs").read_text(encoding="utf-8")
    text = seed.read_text(encoding="utf-8")
    block = text.split("```rust\n", 1)[1].split("```", 1)[0]
    seed_lines = [
        line[4:] if line.startswith("    ") else line.strip() for line in block.splitlines()
    ]
    while seed_lines and not seed_lines[-1]:
        seed_lines.pop()
    ours = example.splitlines()
    assert len(ours) == len(seed_lines)
    diff = [(a, b) for a, b in zip(seed_lines, ours, strict=True) if a != b]
    assert len(diff) == 1 and "Config::from_dsn(" in diff[0][0] and "PGQRS_DSN" in diff[0][1], diff
