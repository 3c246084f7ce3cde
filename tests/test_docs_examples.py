"""The documentation's Python examples: the pytest module of docs/testing.md
runs and passes as written, and every Python block of the task, testing and
framework docs passes ``mypy --strict``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pgqrs
from _docblocks import DOCS, python_blocks

#: The docs whose every Python block is a complete module, checked by mypy.
TYPED_DOCS = ["tasks.md", "testing.md", "frameworks.md"]


def test_the_testing_docs_pytest_example_passes(dsn: str, schema: str, tmp_path: Path) -> None:
    [(_, code)] = python_blocks("testing.md")
    (tmp_path / "test_example.py").write_text(code, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    env = {**os.environ, "PGQRS_DSN": dsn, "PGQRS_SCHEMA": schema, "PGQRS_EMBEDDED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout, done.stdout


#: What the types catch: each ignore must match an error mypy reports (strict
#: mode's warn_unused_ignores fails the run on one that matches nothing).
TYPING_PROBE = """
from __future__ import annotations

from typing_extensions import assert_type

import pgqrs
import pgqrs.aio


def probe(config: pgqrs.Config) -> None:
    with pgqrs.Producer(config, "q") as p:
        assert_type(p, pgqrs.Producer)
    with pgqrs.Admin(config) as admin:
        assert_type(admin, pgqrs.Admin)
        admin.list_archive(status="completed")
        admin.list_archive(status="donez")  # type: ignore[arg-type]
    worker = pgqrs.Worker(config)
    worker.on("completed")
    worker.on("complete")  # type: ignore[arg-type]

    @worker.handler("q")
    def good(msg: pgqrs.Message) -> int:
        return msg.attempts

    @worker.handler("q")  # type: ignore[type-var]
    def bad(n: int) -> int:
        return n


tasks = pgqrs.TaskRegistry()


@tasks.task(queue="q")
def add(a: int, b: int = 2) -> int:
    return a + b


def task_probe() -> None:
    assert_type(add(1), int)  # calling the task calls the function
    assert_type(add.run(1, b=3), int)
    add.with_options(delay=5).enqueue(1, b=3)
    add.with_options(delay=5).enqueue(a="1")  # type: ignore[arg-type]
    add.with_options(priority=1).enqueue(1, c=3)  # type: ignore[call-arg]
    handle: pgqrs.TaskHandle = add.enqueue(1, priority=3)


async def aprobe(config: pgqrs.Config) -> None:
    async with pgqrs.aio.Consumer(config, "q") as c:
        assert_type(c, pgqrs.aio.Consumer)
    worker = pgqrs.aio.Worker(config)

    @worker.handler("q")
    async def good(msg: pgqrs.Message) -> None: ...
"""


@pytest.mark.slow
def test_the_docs_python_examples_pass_mypy_strict(tmp_path: Path) -> None:
    files = []
    for doc in TYPED_DOCS:
        package = tmp_path / f"docs_{doc.removesuffix('.md')}"  # a package per doc
        package.mkdir()
        (package / "__init__.py").write_text("", encoding="utf-8")
        for n, (_, code) in enumerate(python_blocks(doc)):
            path = package / f"block_{n}.py"
            path.write_text(code, encoding="utf-8")
            files.append(str(path))
    assert len(files) >= 6
    (tmp_path / "typing_probe.py").write_text(TYPING_PROBE, encoding="utf-8")
    files.append(str(tmp_path / "typing_probe.py"))
    # Django ships no type information (django-stubs is not a dependency):
    # its names are Any, and a command class may subclass one.
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\nstrict = True\n"
        "[mypy-django.*]\nignore_missing_imports = True\n"
        "[mypy-docs_frameworks.*]\ndisallow_subclassing_any = False\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"),
         "--cache-dir", str(tmp_path / ".mypy_cache"), *files],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_tasks_example_enqueues_and_a_worker_runs_it(
    config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("```python\ntasks = pgqrs.TaskRegistry(config)")
    code = readme[start + 10 : readme.index("```\n", start + 10)]
    *body, last = code.strip().splitlines()
    assert last == "pgqrs.Worker(config, tasks=tasks).run()"
    admin.create_queue("emails")
    namespace: dict[str, Any] = {"pgqrs": pgqrs, "config": config}
    exec("\n".join(body), namespace)  # declares the task and enqueues it
    try:
        pgqrs.Worker(config, tasks=namespace["tasks"]).run(until_empty=True)
        [row] = admin.list_archive("emails")
        assert (row.status, row.payload) == (
            "completed",
            {"to": "user@example.com", "name": "Ann"},
        )
    finally:
        namespace["tasks"].close()
