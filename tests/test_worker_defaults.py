"""The Rust and Python workers share their defaults (README: "as in Python").

Both workers follow the same rules (concurrency, fetching, prefetch,
completion, leases, retries); the values live once per language, in
rust/src/worker/options.rs and pgqrs/_worker/defaults.py. This reads the
Rust constants from the source and compares them with the Python ones, so a
change to one side that forgets the other fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgqrs._worker import defaults

OPTIONS_RS = Path(__file__).resolve().parents[1] / "rust" / "src" / "worker" / "options.rs"

#: Rust constant -> Python constant of the same meaning (seconds for durations).
SHARED = {
    "DEFAULT_CONCURRENCY": "DEFAULT_CONCURRENCY",
    "DEFAULT_BATCH_CAP": "DEFAULT_BATCH_CAP",
    "DEFAULT_FETCH_BATCH_FRACTION": "DEFAULT_FETCH_BATCH_FRACTION",
    "DEFAULT_FETCH_DELAY": "DEFAULT_FETCH_DELAY",
    "DEFAULT_PREFETCH_HORIZON": "DEFAULT_PREFETCH_HORIZON",
    "DEFAULT_PREFETCH_PER_SLOT": "DEFAULT_PREFETCH_PER_SLOT",
    "DEFAULT_PREFETCH_DURATION_WEIGHT": "DEFAULT_PREFETCH_DURATION_WEIGHT",
    "DEFAULT_PREFETCH_MAX_WAIT": "DEFAULT_PREFETCH_MAX_WAIT",
    "DEFAULT_POLL_INTERVAL": "DEFAULT_POLL_INTERVAL",
    "DEFAULT_RETRY_BASE": "DEFAULT_BACKOFF_BASE",
    "DEFAULT_RETRY_MAX": "DEFAULT_BACKOFF_MAX",
    "DEFAULT_RETRY_JITTER": "DEFAULT_BACKOFF_JITTER",
    "DEFAULT_SHUTDOWN_GRACE": "DEFAULT_GRACE_PERIOD",
    "DEFAULT_HEARTBEAT_INTERVAL": "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_FLUSH_INTERVAL": "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_FLUSH_SIZE": "DEFAULT_FLUSH_SIZE",
    "DEFAULT_COMPLETION_BACKLOG": "DEFAULT_COMPLETION_BACKLOG",
    "DEFAULT_REAP_INTERVAL": "DEFAULT_REAP_INTERVAL",
    "DEFAULT_SHUTDOWN_WRITE_TIMEOUT": "DEFAULT_SHUTDOWN_WRITE_TIMEOUT",
    "DEFAULT_LEASE_EXTEND_AT": "DEFAULT_LEASE_EXTEND_AT",
    "DEFAULT_LEASE_CHECK_INTERVAL": "DEFAULT_LEASE_CHECK_INTERVAL",
}

_CONST = re.compile(r"^pub const (\w+): [\w:]+ = (.+);$", re.MULTILINE)
_DURATION = re.compile(r"Duration::from_(secs|millis)\((\d+)\)")
_UNIT = {"secs": 1.0, "millis": 0.001}


def _rust_constants() -> dict[str, float]:
    """The numeric constants of options.rs (durations in seconds; a constant
    defined from another, like ``2 * DEFAULT_FLUSH_SIZE``, evaluated)."""
    values: dict[str, float] = {}
    for name, expr in _CONST.findall(OPTIONS_RS.read_text(encoding="utf-8")):
        if duration := _DURATION.fullmatch(expr):
            values[name] = int(duration[2]) * _UNIT[duration[1]]
        elif re.fullmatch(r"[\d_.]+", expr):
            values[name] = float(expr.replace("_", ""))
        elif product := re.fullmatch(r"(\d+) \* (\w+)", expr):
            values[name] = int(product[1]) * values[product[2]]
    return values


RUST = _rust_constants()


@pytest.mark.parametrize("rust_name, python_name", sorted(SHARED.items()))
def test_rust_and_python_worker_defaults_agree(rust_name: str, python_name: str) -> None:
    assert rust_name in RUST, f"{rust_name} not found (or not a number) in {OPTIONS_RS}"
    assert RUST[rust_name] == pytest.approx(float(getattr(defaults, python_name)))


def test_both_default_to_auto_prefetch() -> None:
    assert "pub const DEFAULT_PREFETCH: Prefetch = Prefetch::Auto;" in OPTIONS_RS.read_text(
        encoding="utf-8"
    )
    assert defaults.DEFAULT_PREFETCH == "auto"
