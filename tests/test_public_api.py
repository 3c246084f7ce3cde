"""The public surface is small, listed in __all__, and the same for sync and asyncio."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pgqrs
import pgqrs.aio

ROOT = Path(__file__).resolve().parents[1]


def test_all_lists_exactly_the_public_names() -> None:
    # Submodules: aio, and the optional ones (pgqrs[otel], pgqrs[prometheus], pgqrs[dashboard]),
    # attributes of the package once another test imported them.
    submodules = {"aio", "dashboard", "otel", "prometheus", "testing"}
    public = {n for n in dir(pgqrs) if not n.startswith("_")} - submodules
    assert public == set(pgqrs.__all__) - {"__version__"}
    for name in pgqrs.__all__:
        assert hasattr(pgqrs, name), name
    assert {n for n in dir(pgqrs.aio) if not n.startswith("_")} == set(pgqrs.aio.__all__)


def test_errors_share_one_root() -> None:
    for name in pgqrs.__all__:
        obj = getattr(pgqrs, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, pgqrs.Error), name


#: Methods that are plain (not awaited) in both forms by design: decorators,
#: and Worker.stop(), which signal handlers and other threads call; Worker.schedule
#: only declares (written when the worker starts).
SYNC_IN_BOTH = {
    "Worker.handler",
    "Worker.include",
    "Worker.on",
    "Worker.schedule",
    "Worker.subscribe",
    "Worker.stop",
}


def test_asyncio_twin_has_the_same_names_and_signatures() -> None:
    for name in pgqrs.aio.__all__:
        sync_obj, async_obj = getattr(pgqrs, name), getattr(pgqrs.aio, name)
        if not inspect.isclass(sync_obj):
            continue
        sync_methods = {m for m in dir(sync_obj) if not m.startswith("_")}
        async_methods = {m for m in dir(async_obj) if not m.startswith("_")}
        assert sync_methods == async_methods, name
        for method in sync_methods:
            s, a = getattr(sync_obj, method), getattr(async_obj, method)
            if callable(s):
                assert shape(s) == shape(a), f"{name}.{method}"
                if f"{name}.{method}" in SYNC_IN_BOTH:
                    continue
                assert inspect.iscoroutinefunction(a), f"{name}.{method} must be async"


def test_generated_sync_code_is_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "async_to_sync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def shape(fn: object) -> list[tuple[str, object, object]]:
    """Parameter names, kinds and defaults (annotations differ: Connection vs AsyncConnection)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]  # type: ignore[arg-type]
