"""The Rust and Python workers share their defaults (README: "as in Python").

Both workers follow the same rules (concurrency, fetching, prefetch,
completion, leases, retries); each default is listed once, in
sql/worker_defaults.json, and tools/gen_defaults.py writes
pgqrs/_worker/defaults.py and rust/src/worker/defaults.rs from it. These tests
check that the generated files are up to date, that the Python constants are
the data file's values, and (through a Rust test that reads the data file)
that ``WorkerOptions::default()`` is too.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pgqrs._worker import defaults

ROOT = Path(__file__).resolve().parents[1]
#: Seconds allowed for cargo, including a compilation of the worker tests.
CARGO_TIMEOUT = 1200


def _generator() -> ModuleType:
    path = ROOT / "tools" / "gen_defaults.py"
    spec = importlib.util.spec_from_file_location("gen_defaults", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GEN = _generator()
ENTRIES: list[dict[str, Any]] = GEN.load()


def test_the_generated_files_are_up_to_date() -> None:
    assert GEN.stale(ENTRIES) == []
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_defaults.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_check_finds_a_changed_value() -> None:
    changed = [dict(e) for e in ENTRIES]
    changed[0]["value"] = changed[0]["value"] + 1
    assert GEN.stale(changed) == [GEN.PYTHON, GEN.RUST]


def test_the_data_file_refuses_a_value_of_the_wrong_unit(tmp_path: Path) -> None:
    bad = tmp_path / "worker_defaults.json"
    bad.write_text(
        '{"defaults": [{"name": "DEFAULT_X", "unit": "seconds", "value": 1, "doc": ["x"]}]}'
    )
    with pytest.raises(GEN.DataError, match=r"DEFAULT_X: seconds is a float"):
        GEN.load(bad)


@pytest.mark.parametrize("name", [e["name"] for e in ENTRIES])
def test_python_defaults_are_the_data_file(name: str) -> None:
    value = getattr(defaults, name)
    assert value == GEN.value_of(ENTRIES, name)
    unit = next(e["unit"] for e in ENTRIES if e["name"] == name)
    assert type(value) is {"seconds": float, "fraction": float, "count": int, "enum": str}[unit]


def test_rust_worker_options_default_is_the_data_file() -> None:
    """rust/tests/worker.rs reads the data file and compares each value with
    ``WorkerOptions::default()`` (and the other public defaults)."""
    cargo = shutil.which("cargo")
    assert cargo, "cargo is required for the Rust tests (install the Rust toolchain)"
    proc = subprocess.run(
        [cargo, "test", "--test", "worker", "worker_options_default_is_the_data_file"],
        cwd=ROOT / "rust",
        env={**os.environ, "CARGO_TERM_COLOR": "never"},
        capture_output=True,
        text=True,
        timeout=CARGO_TIMEOUT,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "test result: ok. 1 passed" in proc.stdout
