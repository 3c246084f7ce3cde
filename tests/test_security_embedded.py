"""A private embedded server (issue 15, Why 4-5 / Must 3), tried as an attacker.

As root (these tests need it: the server then runs as ``embedded_postgres``),
another local user (``nobody``) must not reach the server through its socket
or TCP, whatever the data directory's length; pgqrs must not open parent
directories up, follow a symbolic link planted at the data directory or its
lock file, or take over a directory that belongs to someone else; the server
must not run with group root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgqrs import _embedded
from test_embedded import import_path, python_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser"
)


@pytest.fixture
def parent() -> Iterator[Path]:
    """A directory (mode 0755, root's) to hold data directories; servers stopped after."""
    base = Path(tempfile.mkdtemp(prefix="pgqrs-sec-"))
    base.chmod(0o755)
    yield base
    for pgdata in [p for p in base.rglob("*") if (p / "PG_VERSION").exists()]:
        with contextlib.suppress(Exception):
            _embedded.stop({_embedded.EMBEDDED_DIR_ENV_VAR: str(pgdata)})
    shutil.rmtree(base, ignore_errors=True)


def env_for(pgdata: Path) -> dict[str, str]:
    return {_embedded.EMBEDDED_DIR_ENV_VAR: str(pgdata)}


def connect_as_nobody(conninfo: str) -> subprocess.CompletedProcess[str]:
    python = python_for("nobody")
    if python is None:
        pytest.skip("no Python interpreter that user nobody may run can import psycopg")
    return subprocess.run(
        [
            "runuser",
            "-u",
            "nobody",
            "--",
            "env",
            f"PYTHONPATH={os.pathsep.join(import_path())}",
            python,
            "-c",
            "import sys, psycopg\n"
            "conn = psycopg.connect(sys.argv[1], connect_timeout=3)\n"
            "print('CONNECTED AS', conn.execute('SELECT current_user').fetchone()[0])\n",
            conninfo,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("length", ["short", "long"])
def test_another_user_cannot_reach_the_server(parent: Path, length: str) -> None:
    """With a long path (over ~92 bytes) the wheel put the socket in a 0777
    directory with ``trust``: ``nobody`` connected as superuser."""
    pgdata = parent / "pg"
    if length == "long":
        pgdata = parent / ("d" * (120 - len(str(parent)))) / "pg"
        pgdata.parent.mkdir(mode=0o755)
        pgdata.parent.chmod(0o755)
    dsn = _embedded.ensure_server(env_for(pgdata), announce=False)
    socket_dir = Path(psycopg.conninfo.conninfo_to_dict(dsn)["host"])  # type: ignore[arg-type]
    assert (length == "long") == (socket_dir != pgdata)
    server_user = pwd.getpwnam(_embedded.ROOT_SERVER_USER)
    st = os.lstat(socket_dir)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == server_user.pw_uid
    assert stat.S_IMODE(os.lstat(socket_dir / ".s.PGSQL.5432").st_mode) == 0o700

    # The attack: through the socket, and through TCP on the default port.
    for target in (dsn, "host=127.0.0.1 port=5432 user=postgres dbname=postgres"):
        attempt = connect_as_nobody(target)
        assert attempt.returncode != 0 and "CONNECTED AS" not in attempt.stdout, attempt

    # The owner (root) connects; nothing trusts other users, no TCP listener.
    with psycopg.connect(dsn) as conn:
        methods = {
            row[0] for row in conn.execute("SELECT auth_method FROM pg_hba_file_rules").fetchall()
        }
        assert methods == {"peer", "reject"}, methods
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SHOW unix_socket_permissions").fetchone() == ("0700",)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert pid is not None
    # The server runs with its own group, never root's.
    status = _embedded.status(env_for(pgdata))
    assert status.pid is not None
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{status.pid}/status").read_text().splitlines()
    )
    gids = fields["Gid"].split() + fields["Groups"].split()
    assert "0" not in gids, fields["Gid"]


def test_no_parent_directory_is_opened_up(parent: Path) -> None:
    """The wheel ran ``chmod o+rx`` on every parent of PGDATA, up to ``/``."""
    closed = parent / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(_embedded.EmbeddedServerError, match=r"cannot enter .*closed \(mode 0700\)"):
        _embedded.ensure_server(env_for(closed / "pg"), announce=False)
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700

    other_rx = parent / "exec-only"
    other_rx.mkdir()
    other_rx.chmod(0o711)
    _embedded.ensure_server(env_for(other_rx / "pg"), announce=False)
    assert stat.S_IMODE(other_rx.stat().st_mode) == 0o711  # not widened to 0755


def test_a_symlink_at_the_data_directory_is_refused(parent: Path) -> None:
    victim = parent / "victim"
    victim.mkdir(mode=0o755)
    (parent / "pg").symlink_to(victim)
    with pytest.raises(_embedded.EmbeddedServerError, match="is a symbolic link"):
        _embedded.ensure_server(env_for(parent / "pg"), announce=False)
    assert victim.stat().st_uid == 0 and not any(victim.iterdir())  # not chowned, not used


def test_a_symlink_at_the_lock_file_is_refused(parent: Path) -> None:
    victim = parent / "victim-file"
    (parent / "pg.lock").symlink_to(victim)
    with pytest.raises(_embedded.EmbeddedServerError, match=r"lock file.*symbolic link"):
        _embedded.ensure_server(env_for(parent / "pg"), announce=False)
    assert not victim.exists()  # root did not create the link's target


def test_a_data_directory_of_another_user_is_refused(parent: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    pgdata = parent / "pg"
    pgdata.mkdir(mode=0o700)
    os.chown(pgdata, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(_embedded.EmbeddedServerError, match="belongs to nobody"):
        _embedded.ensure_server(env_for(pgdata), announce=False)
    assert pgdata.stat().st_uid == nobody.pw_uid  # not taken over


def test_a_lock_file_of_another_user_is_refused(parent: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    lock = parent / "pg.lock"
    lock.touch()
    os.chown(lock, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(_embedded.EmbeddedServerError, match=r"lock file.*belongs to nobody"):
        _embedded.ensure_server(env_for(parent / "pg"), announce=False)


def test_a_data_directory_in_a_directory_others_may_write_is_refused(parent: Path) -> None:
    shared = parent / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone could swap the data directory
    with pytest.raises(_embedded.EmbeddedServerError, match="writable by others"):
        _embedded.ensure_server(env_for(shared / "pg"), announce=False)
