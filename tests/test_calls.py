"""The typed query layer (``pgqrs._async._calls``, and its generated sync
twin): one function per named query, named as the query, with keyword
parameters only; no caller passes a positional list of parameters."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pgqrs._async._calls as acalls
import pgqrs._sync._calls as scalls
from pgqrs._sql import sql_dir

#: Queries with no Python function (none: both languages run every query).
RUST_ONLY: set[str] = set()
SRC = Path(__file__).resolve().parents[1] / "src" / "pgqrs"


def query_names() -> set[str]:
    return {p.stem for p in (sql_dir() / "queries").glob("*.sql")}


def functions(module: object) -> dict[str, object]:
    return {
        name: f
        for name, f in inspect.getmembers(module, inspect.isfunction)
        if f.__module__ == getattr(module, "__name__", None) and not name.startswith("_")
    }


def test_every_named_query_has_a_function_of_its_name() -> None:
    names = query_names()
    for module in (acalls, scalls):
        defined = set(functions(module))
        assert names - RUST_ONLY <= defined, sorted(names - RUST_ONLY - defined)
        assert defined <= names, sorted(defined - names)
        assert not defined & RUST_ONLY


def test_parameters_are_keywords_after_the_database() -> None:
    for module in (acalls, scalls):
        for name, f in functions(module).items():
            params = list(inspect.signature(f).parameters.values())  # type: ignore[arg-type]
            assert params[0].name == "db", name
            for p in params[1:]:
                assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)
                assert p.annotation is not inspect.Parameter.empty, (name, p.name)


def test_no_call_site_runs_a_named_query_by_itself() -> None:
    """Outside the typed layer (and the Database that runs it), no module of
    the client or the worker calls ``fetch``/``fetch_tuples`` or reads a
    query's text: they call the query's function. The dashboard's own typed
    layer (``_dashboard/queries.py``, one method per dashboard query) is the
    other place allowed to run statements by name."""
    layers = {"_async/_calls.py", "_sync/_calls.py", "_async/_db.py", "_sync/_db.py"}
    layers.add("_dashboard/queries.py")
    pattern = re.compile(r"\.(fetch|fetch_tuples)\(|\.queries\[")
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).as_posix() in layers:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
