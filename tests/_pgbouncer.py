"""Starting Debian's ``pgbouncer`` in transaction mode in front of a test server.

Transaction pooling is the mode that breaks clients relying on session state
(SET, server-side prepared statements, temp tables, session advisory locks):
consecutive transactions of one client connection may run on different server
connections. pgqrs promises to work there, so the tests run through it.

pgbouncer refuses to run as root; as root we drop to an unprivileged user with
``setpriv`` (which execs, so the Popen pid is pgbouncer's own and signals reach it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg.conninfo

#: Environment variable: when "1", the ``dsn`` fixture points at a pgbouncer.
VIA_PGBOUNCER_ENV = "PGQRS_TEST_VIA_PGBOUNCER"
#: Environment variable: when "1", a missing pgbouncer fails tests instead of skipping them
#: (scripts/test sets it, after installing the Debian package).
REQUIRE_PGBOUNCER_ENV = "PGQRS_TEST_REQUIRE_PGBOUNCER"
#: Unprivileged OS user pgbouncer runs as when the tests run as root.
PGBOUNCER_OS_USER = "nobody"
#: Server connections per (database, user) pair; pgqrs tests open few at a time.
PGBOUNCER_POOL_SIZE = 40
#: Seconds to wait for pgbouncer to accept connections.
PGBOUNCER_START_TIMEOUT = 15.0


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgBouncer:
    """A running pgbouncer (pool_mode=transaction, auth_type=trust) for ``upstream_dsn``.

    ``dsn`` reaches the upstream database through the bouncer; ``admin_dsn``
    reaches pgbouncer's console (SHOW POOLS, SHOW STATS, ...).
    """

    def __init__(self, upstream_dsn: str, *, pool_size: int = PGBOUNCER_POOL_SIZE) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise FileNotFoundError("pgbouncer is not installed (apt-get install -y pgbouncer)")
        self.binary = binary
        up = psycopg.conninfo.conninfo_to_dict(upstream_dsn)
        self.user = str(up.get("user") or "postgres")
        self.dbname = str(up.get("dbname") or self.user)
        self.upstream_host = str(up.get("host") or "/tmp")
        self.upstream_port = int(up.get("port") or 5432)
        self.pool_size = pool_size
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgqrs-pgbouncer-"))
        self.config_path = self.dir / "pgbouncer.ini"
        self.log_path = self.dir / "pgbouncer.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/pgbouncer"

    def _write_config(self) -> None:
        self.config_path.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={self.upstream_host} port={self.upstream_port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.dir / 'userlist.txt'}",
                    f"admin_users = {self.user}",
                    "pool_mode = transaction",
                    f"default_pool_size = {self.pool_size}",
                    "max_client_conn = 1000",
                    "server_reset_query =",
                    "ignore_startup_parameters = extra_float_digits",
                    f"logfile = {self.log_path}",
                    f"pidfile = {self.dir / 'pgbouncer.pid'}",
                    "",
                ]
            )
        )
        (self.dir / "userlist.txt").write_text(f'"{self.user}" ""\n')

    def start(self) -> str:
        self._write_config()
        cmd = [self.binary, str(self.config_path)]
        if os.geteuid() == 0:
            entry = self._os_user()
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            cmd = [
                "setpriv",
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--clear-groups",
                *cmd,
            ]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + PGBOUNCER_START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self._proc.returncode}:\n{self.log()}")
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return self.dsn
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start:\n{self.log()}") from None
                time.sleep(0.05)

    def _os_user(self) -> pwd.struct_passwd:
        """The unprivileged user to run as: the owner of the upstream's socket
        directory (the server's OS user, which can reach the socket), else nobody."""
        if self.upstream_host.startswith("/"):
            with contextlib.suppress(OSError, KeyError):
                owner = os.stat(self.upstream_host).st_uid
                if owner != 0:
                    return pwd.getpwuid(owner)
        return pwd.getpwnam(PGBOUNCER_OS_USER)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def show(self, what: str) -> list[dict[str, object]]:
        """Rows of the console command ``SHOW <what>`` (simple protocol, as the console needs)."""
        with psycopg.connect(self.admin_dsn, autocommit=True, prepare_threshold=None) as conn:
            cur = psycopg.ClientCursor(conn)
            cur.execute(f"SHOW {what}")
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def running_pgbouncer(
    upstream_dsn: str, *, pool_size: int = PGBOUNCER_POOL_SIZE
) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(upstream_dsn, pool_size=pool_size)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
