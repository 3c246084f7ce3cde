"""The Rust crate's own tests and the seed's Rust Quick Example, on the session server.

``cargo test`` needs a real PostgreSQL: it gets the pytest session's server
through ``PGQRS_TEST_DSN`` (each Rust test makes and drops its own schema).
``cargo fmt --check`` and ``cargo clippy`` run in ``scripts/test`` before pytest.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
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


@pytest.mark.slow  # a build with sqlx
def test_cargo_test_sqlx_feature(dsn: str, sql: psycopg.Connection[tuple[object, ...]]) -> None:
    """Feature ``sqlx``: transactional enqueue on an sqlx transaction (rust/tests/sqlx.rs)."""
    try:
        proc = cargo("test", "--features", "sqlx", "--test", "sqlx", env={"PGQRS_TEST_DSN": dsn})
        assert proc.returncode == 0, f"cargo test (sqlx) failed:\n{proc.stdout}\n{proc.stderr}"
        assert "1 passed" in proc.stdout, proc.stdout
    finally:
        _drop_rust_test_schemas(sql)


SEED = RUST_DIR.parents[1] / "shared" / "seed" / "pgqrs-overview.md"
SEED_DSN_LINE = '    let config = Config::from_dsn("postgresql://user:pass@localhost/mydb")?;'
OUR_DSN_LINE = '    let config = Config::from_dsn(&std::env::var("PGQRS_DSN")?)?;'
# sha256 of the seed's Rust block, for checkouts without ../shared beside them.
SEED_RUST_BLOCK_SHA256 = "1c220e62e65153b01fc41937c89e9796220ba6f03d30469ee3dc0cd844cf8381"


def seed_rust_block() -> str:
    text = SEED.read_text(encoding="utf-8")
    match = re.search(r'=== "Rust"\n\n    ```rust\n(.*?)    ```', text, re.S)
    assert match, "the seed has no Rust Quick Example"
    lines = match.group(1).splitlines()
    return "\n".join(line[4:] if line.startswith("    ") else line for line in lines) + "\n"


def test_quick_example_is_the_seeds_verbatim() -> None:
    """examples/quickstart.rs is the seed's Rust Quick Example; only the DSN line differs."""
    text = (RUST_DIR / "examples" / "quickstart.rs").read_text(encoding="utf-8")
    assert text.count(OUR_DSN_LINE) == 1
    as_seed = text.replace(OUR_DSN_LINE, SEED_DSN_LINE)
    assert hashlib.sha256(as_seed.encode("utf-8")).hexdigest() == SEED_RUST_BLOCK_SHA256
    if SEED.exists():  # beside the checkout in development and CI
        assert as_seed == seed_rust_block()


def test_seed_quick_example_runs(database_dsn: str) -> None:
    """The example installs into the default schema, so it gets a database of its own."""
    proc = cargo("run", "--quiet", "--example", "quickstart", env={"PGQRS_DSN": database_dsn})
    assert proc.returncode == 0, f"quickstart failed:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.splitlines() == [
        "Enqueued message: 1",
        'Processing: {"task":"send_email","to":"user@example.com"}',
    ]
    with psycopg.connect(database_dsn) as conn:
        archived = conn.execute("SELECT id, status, queue FROM pgqrs.archive").fetchall()
        left = conn.execute("SELECT count(*) FROM pgqrs.messages").fetchone()
    assert archived == [(1, "completed", "tasks")]
    assert left == (0,)


def sql_files() -> list[str]:
    """Every file of the repository's one sql/ folder, relative to it."""
    root = RUST_DIR.parent / "sql"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_cargo_package_builds_the_crate_from_its_own_files() -> None:
    """rust/sql is a symlink to the one sql/ folder; `cargo package` copies the
    files into the crate and builds it from the package alone (no ../sql)."""
    link = RUST_DIR / "sql"
    assert link.is_symlink() and os.readlink(link) == "../sql", "rust/sql must stay a symlink"
    listed = cargo("package", "--allow-dirty", "--list", "--offline", env={})
    assert listed.returncode == 0, listed.stderr
    packaged = sorted(
        line.removeprefix("sql/") for line in listed.stdout.splitlines() if line.startswith("sql/")
    )
    assert packaged == sql_files()
    built = cargo("package", "--allow-dirty", "--offline", env={})
    assert built.returncode == 0, f"cargo package failed:\n{built.stdout}\n{built.stderr}"
    assert "Verifying pgqrs" in built.stderr


@pytest.mark.slow
def test_the_wheel_carries_the_sql_folder(tmp_path: Path) -> None:
    """hatch's force-include puts sql/ into the wheel as pgqrs/sql."""
    pytest.importorskip("build", reason="pip install build to check the wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(RUST_DIR.parent)],
        capture_output=True,
        text=True,
        timeout=CARGO_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = sorted(
            n.removeprefix("pgqrs/sql/") for n in z.namelist() if n.startswith("pgqrs/sql/")
        )
    assert names == sql_files()
