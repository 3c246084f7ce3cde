"""Tasks across languages on the one wire format (header ``pgqrs-task`` = the
task's name, payload = the arguments by name): a message enqueued by the
Python Producer with that header runs in a Rust worker's typed task, and a
task enqueued from Rust is that message (rust/examples/tasks.rs)."""

from __future__ import annotations

import re
import subprocess

import pytest

import pgqrs
from test_rust import cargo

pytestmark = pytest.mark.slow


def example(*args: str, config: pgqrs.Config) -> subprocess.CompletedProcess[str]:
    proc = cargo(
        "run",
        "--quiet",
        "--example",
        "tasks",
        "--",
        *args,
        env={"PGQRS_DSN": config.dsn, "PGQRS_SCHEMA": config.schema},
    )
    assert proc.returncode == 0, f"tasks {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_a_task_message_from_python_runs_in_a_rust_worker(
    admin: pgqrs.Admin, config: pgqrs.Config
) -> None:
    admin.create_queue("math")
    with pgqrs.Producer(config, "math") as producer:
        add = producer.enqueue({"a": 2, "b": 3}, headers={"pgqrs-task": "add"})
        unknown = producer.enqueue({"a": 1}, headers={"pgqrs-task": "subtract"})
        bad = producer.enqueue({"a": "two", "b": 3}, headers={"pgqrs-task": "add"})
    assert example("work", "3", config=config).stdout.strip() == "done"
    rows = {r.id: r for r in admin.list_archive("math")}
    assert (rows[add.id].status, rows[add.id].result) == ("completed", 5)
    for m, kind in ((unknown, "pgqrs.UnknownTask"), (bad, "pgqrs.PayloadError")):
        row = rows[m.id]
        assert (row.status, row.attempts) == ("dead", 1), row
        assert isinstance(row.error, dict) and row.error["type"] == kind, row.error


def test_a_task_enqueued_from_rust_is_the_wire_format(
    admin: pgqrs.Admin, config: pgqrs.Config
) -> None:
    admin.create_queue("math")
    out = example("enqueue", "40", "2", config=config).stdout
    found = re.search(r"message=(\d+)", out)
    assert found, out
    with pgqrs.Consumer(config, "math") as consumer:
        msg = consumer.dequeue()
    assert msg is not None and msg.id == int(found.group(1))
    assert msg.headers == {"pgqrs-task": "add"}
    assert msg.payload == {"a": 40, "b": 2}


def test_tasks_run_both_ways_between_python_and_rust(
    admin: pgqrs.Admin, config: pgqrs.Config
) -> None:
    """The whole path, both ways: a Python task's ``enqueue`` runs in the Rust
    worker's typed task of the same name, and a task the Rust producer
    enqueued (``enqueue_task``) runs in a Python worker serving a registry."""
    admin.create_queue("math")
    tasks = pgqrs.TaskRegistry(config)

    @tasks.task(queue="math")
    def add(a: int, b: int = 2) -> int:
        return a + b

    try:
        sent = add.enqueue(a=2, b=3)
        assert example("work", "1", config=config).stdout.strip() == "done"
        assert sent.result(timeout=30) == 5  # run by Rust, read back as the task's type
        out = example("enqueue", "40", "1", config=config).stdout
        found = re.search(r"message=(\d+)", out)
        assert found, out
        worker = pgqrs.Worker(config, tasks=tasks)
        worker.run(until_empty=True)
        row = admin.wait(int(found.group(1)), timeout=30)
        assert (row.status, row.result) == ("completed", 41)  # run by Python
    finally:
        tasks.close()
