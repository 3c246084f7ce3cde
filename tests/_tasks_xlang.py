"""The Python side of the cross-language tasks test (docs/tasks.md, wire format).

    python tests/_tasks_xlang.py enqueue DSN SCHEMA   # prints the ids, one JSON line
    python tests/_tasks_xlang.py work DSN SCHEMA      # serves the tasks until the queue is empty

Both sides agree on queue ``xlang`` (created here when missing) and two tasks:

* ``add``: arguments ``{"a": int, "b": int}`` (``b`` defaults to 2), result ``a + b``;
* ``greet``: arguments ``{"person": {"name": str, "langs": [str]}}``, result
  ``{"greeting": "hello <name>", "langs": <len(langs)>}``.

``enqueue`` enqueues ``add(a=40)`` and ``greet(person=Person("Ann", ["py", "rs"]))``
through Python tasks (for a Rust worker to run); ``work`` runs a Python worker
for messages a Rust producer enqueued by name.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import pgqrs

QUEUE = "xlang"
tasks = pgqrs.TaskRegistry()


@dataclasses.dataclass
class Person:
    name: str
    langs: list[str]


@tasks.task(queue=QUEUE)
def add(a: int, b: int = 2) -> int:
    return a + b


@tasks.task(queue=QUEUE)
def greet(person: Person) -> dict[str, object]:
    return {"greeting": f"hello {person.name}", "langs": len(person.langs)}


def main(argv: list[str]) -> int:
    command, dsn, schema = argv
    config = pgqrs.Config.from_dsn(dsn, schema=schema, pool_max_size=2)
    with pgqrs.Admin(config) as admin:
        admin.create_queue(QUEUE, exist_ok=True)
    tasks.bind(config)
    try:
        if command == "enqueue":
            ids = [add.enqueue(a=40).id, greet.enqueue(person=Person("Ann", ["py", "rs"])).id]
            print(json.dumps(ids), flush=True)
        elif command == "work":
            worker = pgqrs.Worker(config, tasks=tasks, handle_signals=False)
            worker.run(until_empty=True)
            print(json.dumps({"completed": worker.counters.completed}), flush=True)
        else:
            raise SystemExit(f"unknown command {command!r}: enqueue or work")
    finally:
        tasks.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
