"""Tasks (docs/tasks.md): declared once, enqueued by calling them, typed
arguments and results, routed by a worker through the pgqrs-task header."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import math
import signal
from typing import Any

import psycopg
import pydantic
import pytest

import pgqrs
import pgqrs.aio
from pgqrs.testing import make_message, task_message


@dataclasses.dataclass
class Address:
    street: str
    zip: str


@dataclasses.dataclass
class Customer:
    name: str
    address: Address
    tags: list[str] = dataclasses.field(default_factory=list)


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Invoice(pydantic.BaseModel):
    number: int
    total: float


class Receipt(pydantic.BaseModel):
    invoice: int
    paid: bool


def registry_with_tasks(config: pgqrs.Config | None = None, **kw: Any) -> Any:
    tasks = pgqrs.TaskRegistry(config, **kw)
    seen: list[Any] = []

    @tasks.task(queue="tasks")
    def greet(customer: Customer, level: Level = Level.LOW) -> dict[str, Any]:
        seen.append((customer, level))
        return {"hello": customer.name, "street": customer.address.street, "level": level}

    @tasks.task(queue="tasks", name="billing.pay")
    async def pay(invoice: Invoice) -> Receipt:
        seen.append(invoice)
        return Receipt(invoice=invoice.number, paid=True)

    @tasks.task(queue="tasks")
    def add(a: int, b: int = 2) -> int:
        return a + b

    return tasks, seen, greet, pay, add


# -- declaring and encoding (no database) --------------------------------------------------


def test_a_task_is_declared_with_its_queue_and_name() -> None:
    tasks, _, greet, pay, add = registry_with_tasks()
    assert (greet.name, greet.queue, pay.name) == ("greet", "tasks", "billing.pay")
    assert set(tasks.tasks) == {"greet", "billing.pay", "add"}
    assert tasks.queues == ["tasks"]
    assert add(1, b=5) == 6  # calling it calls the function


def test_declaring_refuses_what_cannot_be_sent_by_name() -> None:
    tasks = pgqrs.TaskRegistry()
    with pytest.raises(pgqrs.InvalidArgument, match="'delay' has the name of an enqueue option"):

        @tasks.task(queue="q")
        def f(delay: int) -> None: ...

    with pytest.raises(pgqrs.InvalidArgument, match="cannot be passed by name"):

        @tasks.task(queue="q")
        def g(*items: int) -> None: ...

    with pytest.raises(pgqrs.InvalidArgument, match="needs a queue"):

        @tasks.task()
        def h() -> None: ...

    @tasks.task(queue="q")
    def same() -> None: ...

    with pytest.raises(pgqrs.InvalidArgument, match="task name 'same' is taken"):

        @tasks.task(queue="other", name="same")
        def again() -> None: ...


def test_the_payload_is_the_arguments_by_name_as_json() -> None:
    _, _, greet, pay, add = registry_with_tasks()
    c = Customer("Ann", Address("Main St 1", "1000"), ["vip"])
    assert greet.payload(c, level=Level.HIGH) == {
        "customer": {"name": "Ann", "address": {"street": "Main St 1", "zip": "1000"},
                     "tags": ["vip"]},
        "level": "high",
    }
    assert pay.payload(invoice=Invoice(number=7, total=9.5)) == {
        "invoice": {"number": 7, "total": 9.5}
    }
    assert add.payload(1) == {"a": 1}  # defaults are the worker's to apply
    with pytest.raises(pgqrs.InvalidArgument, match=r"task 'add'.*missing a required argument"):
        add.payload(b=1)


def test_a_value_that_cannot_be_sent_is_a_payload_error_naming_the_field() -> None:
    import datetime

    tasks = pgqrs.TaskRegistry(eager=True)

    @dataclasses.dataclass
    class Meeting:
        title: str
        at: Any

    @tasks.task(queue="q")
    def book(meeting: Meeting) -> None: ...

    with pytest.raises(pgqrs.PayloadError, match=r"task 'book' argument 'meeting'\.at is of type "
                       r"datetime\.datetime"):
        book.payload(Meeting("x", datetime.datetime.now()))
    # NaN passes the conversion and is refused by the payload rules, with its place.
    with pytest.raises(pgqrs.PayloadError, match=r"payload\['meeting'\]\['at'\] is nan"):
        book.enqueue(Meeting("x", math.nan))


def test_arguments_are_decoded_by_the_type_hints() -> None:
    _, _, greet, pay, add = registry_with_tasks()
    kwargs = greet.arguments(
        {"customer": {"name": "Ann", "address": {"street": "s", "zip": "z"}}, "level": "high"}
    )
    assert kwargs == {"customer": Customer("Ann", Address("s", "z")), "level": Level.HIGH}
    assert pay.arguments({"invoice": {"number": 1, "total": 2}})["invoice"] == Invoice(
        number=1, total=2.0
    )
    bad = [
        ({"a": "1"}, add, r"task 'add' argument 'a' is str '1', expected an int"),
        ({"a": 1, "c": 2}, add, r"task 'add' has no parameter 'c'"),
        ({}, add, r"lacks argument\(s\) 'a'"),
        ([1], add, "must be a JSON object of arguments by name"),
        (
            {"customer": {"name": "Ann", "address": {"street": "s"}}},
            greet,
            r"argument 'customer'\.address lacks field\(s\) 'zip' of Address",
        ),
        ({"customer": {"name": "A", "address": {"street": "s", "zip": "z"}}, "level": "mid"},
         greet, "not a value of Level"),
        ({"invoice": {"number": "x"}}, pay, "argument 'invoice' is not a valid Invoice"),
    ]
    for payload, task, match in bad:
        with pytest.raises(pgqrs.PayloadError, match=match):
            task.arguments(payload)


def test_run_goes_through_json_as_a_worker_would() -> None:
    _, seen, greet, pay, add = registry_with_tasks()
    c = Customer("Ann", Address("s", "z"), ["a"])
    assert greet.run(c) == {"hello": "Ann", "street": "s", "level": Level.LOW}
    assert seen[-1] == (c, Level.LOW)
    assert seen[-1][0] is not c  # a copy, decoded from the JSON
    assert asyncio.run(pay.run(Invoice(number=3, total=1.0))) == Receipt(invoice=3, paid=True)
    assert add.run(2) == 4


def test_eager_mode_runs_the_task_when_it_is_enqueued() -> None:
    _, seen, greet, _, add = registry_with_tasks(eager=True)
    handle = greet.enqueue(Customer("Bo", Address("s", "z")), level=Level.HIGH)
    assert handle.id is None and handle.message is None
    archived = handle.wait()
    assert archived.status == "completed"
    assert archived.result == {"hello": "Bo", "street": "s", "level": "high"}
    assert seen == [(Customer("Bo", Address("s", "z")), Level.HIGH)]
    assert add.enqueue(a=40).result() == 42


async def test_eager_mode_for_asyncio() -> None:
    _, _, _, pay, add = registry_with_tasks(eager=True)
    handle = await pay.aenqueue(invoice=Invoice(number=5, total=3.0))
    assert await handle.result() == Receipt(invoice=5, paid=True)
    assert await (await add.aenqueue(1, b=1)).result() == 2
    with pytest.raises(pgqrs.InvalidArgument, match=r"use `await pay\.aenqueue"):
        pay.enqueue(invoice=Invoice(number=5, total=3.0))


def test_enqueue_without_a_database_says_how_to_give_one() -> None:
    _, _, _, _, add = registry_with_tasks()
    with pytest.raises(pgqrs.ConfigError, match=r"registry.bind\(config\)"):
        add.enqueue(1)


def test_a_handler_unit_test_with_make_message() -> None:
    def handler(msg: pgqrs.Message) -> int:
        return int(msg.payload["n"]) * msg.attempts

    msg = make_message({"n": 21}, queue="jobs", attempts=2)
    assert (msg.queue, msg.attempts, msg.payload, msg.headers) == ("jobs", 2, {"n": 21}, {})
    assert msg.lease is not None and msg.visible_until > msg.enqueued_at
    assert handler(msg) == 42
    assert make_message((1, 2)).payload == [1, 2]  # as the worker would see it
    with pytest.raises(pgqrs.PayloadError):
        make_message({"x": math.inf})
    with pytest.raises(pgqrs.InvalidArgument):
        make_message({}, attempts=0)


def test_task_message_and_a_tasks_max_attempts() -> None:
    tasks = pgqrs.TaskRegistry()

    @tasks.task(queue="q", max_attempts=2)
    def flaky(n: int) -> int:
        raise RuntimeError(f"boom {n}")

    msg = task_message(flaky, n=1)
    assert msg.headers == {"pgqrs-task": "flaky"} and msg.payload == {"n": 1}
    with pytest.raises(RuntimeError, match="boom 1"):  # attempt 1 of 2: an ordinary failure
        flaky.handle_message(msg)
    last = task_message(flaky, n=1)
    last.attempts = 2
    with pytest.raises(pgqrs.Abort, match=r"gave up after 2 attempt\(s\) \(max_attempts=2\)"):
        flaky.handle_message(last)
    wrong = make_message({"n": "x"}, headers={"pgqrs-task": "flaky"})
    with pytest.raises(pgqrs.Abort, match="argument 'n' is str 'x'"):  # permanent: not retried
        flaky.handle_message(wrong)


# -- through the database and a worker ---------------------------------------------------


async def test_a_worker_serves_tasks_and_plain_messages_on_one_queue(
    config: pgqrs.Config, queue: str, admin: pgqrs.Admin
) -> None:
    tasks, _, greet, pay, add = registry_with_tasks(config)
    try:
        h1 = greet.enqueue(Customer("Ann", Address("s", "z")))
        h2 = await pay.aenqueue(invoice=Invoice(number=9, total=1.5))
        h3 = add.enqueue(1, b=2, priority=5)
        assert h3.message is not None and h3.message.priority == 5
        assert h1.message is not None and h1.message.headers == {"pgqrs-task": "greet"}
        # A message without the header goes to the queue's plain handler.
        with pgqrs.Producer(config, queue) as p:
            plain = p.enqueue({"plain": True})
            # One built by hand in the wire format (as Rust sends it) is routed too.
            by_hand = p.enqueue({"a": 40}, headers={"pgqrs-task": "add"})
            unknown = p.enqueue({"x": 1}, headers={"pgqrs-task": "no_such_task"})

        worker = pgqrs.aio.Worker(config, poll_interval=0.05, tasks=tasks)

        @worker.handler(queue)
        def plain_handler(msg: pgqrs.Message) -> str:
            return f"plain {msg.id}"

        await asyncio.wait_for(worker.run(until_empty=True), 30)
        rows = {r.id: r for r in admin.list_archive(queue)}
        assert rows[h1.id].result == {"hello": "Ann", "street": "s", "level": "low"}  # type: ignore[index]
        assert rows[h2.id].result == {"invoice": 9, "paid": True}  # type: ignore[index]
        assert rows[h3.id].result == 3  # type: ignore[index]
        assert rows[plain.id].result == f"plain {plain.id}"
        assert rows[by_hand.id].result == 42
        dead = rows[unknown.id]
        assert (dead.status, dead.attempts) == ("dead", 1)  # permanent: not retried
        assert "task 'no_such_task', which this worker does not know" in dead.error["message"]
        assert "'add', 'billing.pay', 'greet'" in dead.error["message"]
    finally:
        await tasks.aclose()


def test_a_queue_of_tasks_only_refuses_a_plain_message(
    config: pgqrs.Config, queue: str, admin: pgqrs.Admin
) -> None:
    tasks, _, _, _, add = registry_with_tasks(config)
    try:
        add.enqueue(a=1)
        with pgqrs.Producer(config, queue) as p:
            plain = p.enqueue({"a": 1})
        worker = pgqrs.Worker(config, poll_interval=0.05)
        worker.include(tasks)
        worker.run(until_empty=True)  # the blocking worker, until the queue is empty
        rows = admin.list_archive(queue)
        assert sorted(r.status for r in rows) == ["completed", "dead"]
        dead = next(r for r in rows if r.id == plain.id)
        assert "has no 'pgqrs-task' header" in dead.error["message"]
        assert worker.counters.completed == 1 and worker.counters.dead == 1
    finally:
        tasks.close()


def test_enqueue_joins_the_callers_transaction(
    config: pgqrs.Config, queue: str, admin: pgqrs.Admin, dsn: str
) -> None:
    tasks, _, _, _, add = registry_with_tasks(config)
    try:
        with psycopg.connect(dsn) as conn:
            with conn.transaction():
                add.enqueue(1, connection=conn)
                add.enqueue(2, connection=conn)
            with pytest.raises(RuntimeError), conn.transaction():
                add.enqueue(3, connection=conn)
                raise RuntimeError("rolled back")
        assert admin.queue_stats(queue).ready == 2
        with pytest.raises(pgqrs.InvalidArgument, match="connection= takes an open psycopg"):
            add.enqueue(1, connection="not a connection")  # type: ignore[arg-type]
        with pytest.raises(pgqrs.InvalidArgument, match="'pgqrs-task' is set by the task"):
            add.enqueue(1, headers={"pgqrs-task": "other"})
    finally:
        tasks.close()


def test_enqueue_options_reach_the_message(
    config: pgqrs.Config, queue: str, admin: pgqrs.Admin
) -> None:
    tasks, _, _, _, add = registry_with_tasks(config)
    try:
        first = add.enqueue(1, dedup_key="once", delay=60, headers={"trace": "t1"})
        again = add.with_options(dedup_key="once").enqueue(1)  # the typed form
        assert first.message is not None and again.message is not None
        assert again.id == first.id and not again.message.inserted
        assert first.message.headers == {"trace": "t1", "pgqrs-task": "add"}
        assert admin.queue_stats(queue).delayed == 1
    finally:
        tasks.close()


def test_handle_wait_returns_the_archived_row(
    config: pgqrs.Config, queue: str, admin: pgqrs.Admin
) -> None:
    tasks, _, _, _, add = registry_with_tasks(config)
    try:
        handle = add.enqueue(20, b=22)
        worker = pgqrs.Worker(config, poll_interval=0.05, tasks=tasks)
        worker.run(until_empty=True)
        assert handle.wait(timeout=10).status == "completed"
        assert handle.result(timeout=10) == 42
    finally:
        tasks.close()


# -- until_empty and signals ---------------------------------------------------------------


async def test_until_empty_returns_at_once_on_an_empty_queue(
    config: pgqrs.Config, queue: str
) -> None:
    worker = pgqrs.aio.Worker(config, [queue], poll_interval=60)

    @worker.handler(queue)
    def never(msg: pgqrs.Message) -> None: ...

    await asyncio.wait_for(worker.run(until_empty=True), 15)  # not the 60 s poll


async def test_until_empty_waits_for_messages_handlers_enqueue(
    config: pgqrs.Config, queue: str, admin: pgqrs.Admin
) -> None:
    """A handler enqueueing the next step: still not empty when its job ends."""
    async with pgqrs.aio.Producer(config, queue) as p:
        await p.enqueue({"left": 5})
        worker = pgqrs.aio.Worker(config, [queue], poll_interval=60)

        @worker.handler(queue)
        async def chain(msg: pgqrs.Message) -> None:
            if msg.payload["left"] > 0:
                await p.enqueue({"left": msg.payload["left"] - 1})

        await asyncio.wait_for(worker.run(until_empty=True), 30)
    assert worker.counters.completed == 6
    assert admin.queue_stats(queue).ready == 0


async def test_the_asyncio_worker_leaves_signals_to_the_application(
    config: pgqrs.Config, queue: str
) -> None:
    def mine(signum: int, frame: Any) -> None: ...

    before = signal.signal(signal.SIGTERM, mine)
    try:
        during: list[Any] = []
        for handle_signals in (None, True):
            options = {} if handle_signals is None else {"handle_signals": handle_signals}
            worker = pgqrs.aio.Worker(config, [queue], **options)  # type: ignore[arg-type]

            @worker.handler(queue)
            async def look(msg: pgqrs.Message) -> None:
                during.append(signal.getsignal(signal.SIGTERM))

            async with pgqrs.aio.Producer(config, queue) as p:
                await p.enqueue({})
            await asyncio.wait_for(worker.run(until_empty=True), 30)
            # Whatever the worker installed, the application's handler is back.
            assert signal.getsignal(signal.SIGTERM) is mine
        assert during[0] is mine  # the default: not taken over
        assert during[1] is not mine  # asked to: taken over while running
    finally:
        signal.signal(signal.SIGTERM, before)


async def test_a_loop_signal_handler_is_restored_too(config: pgqrs.Config, queue: str) -> None:
    loop = asyncio.get_running_loop()
    called: list[int] = []
    loop.add_signal_handler(signal.SIGINT, called.append, 1)
    try:
        worker = pgqrs.aio.Worker(config, [queue], handle_signals=True)

        @worker.handler(queue)
        def noop(msg: pgqrs.Message) -> None: ...

        await asyncio.wait_for(worker.run(until_empty=True), 30)
        signal.raise_signal(signal.SIGINT)
        await asyncio.sleep(0.05)  # the loop runs its signal handler on its next turn
        assert called == [1]
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def test_archive_statuses_and_event_kinds_are_literal_types() -> None:
    from typing import get_args

    from pgqrs._validate import ARCHIVE_STATUSES
    from pgqrs._worker.events import EVENT_KINDS

    assert get_args(pgqrs.ArchiveStatus) == ARCHIVE_STATUSES
    assert get_args(pgqrs.EventKind) == EVENT_KINDS
    worker = pgqrs.aio.Worker(pgqrs.Config.from_dsn("postgresql://localhost/x"))
    with pytest.raises(pgqrs.InvalidArgument, match="unknown event 'complete'"):
        worker.on("complete")  # type: ignore[arg-type]
    assert json.dumps(list(EVENT_KINDS))


# -- a long-polling consumer: dequeue(wait=...) -------------------------------------------


def test_dequeue_wait_is_woken_by_an_enqueue(
    config: pgqrs.Config, queue: str, admin: pgqrs.Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from pgqrs._sync import consumer as consumer_module

    # Polling alone would take a minute: only the NOTIFY can end the wait soon.
    monkeypatch.setattr(consumer_module, "WAIT_FIRST_POLL", 60.0)
    monkeypatch.setattr(consumer_module, "WAIT_POLL_INTERVAL", 60.0)
    with pgqrs.Consumer(config, queue) as c, pgqrs.Producer(config, queue) as p:
        # Enqueues notify while a listening worker serves the queue (queue_lock.sql).
        from pgqrs._sync import _calls

        _calls.worker_register(c._db, hostname="h", pid=1, queues=[queue], listening=True)
        assert c.dequeue(wait=0.2) is None  # nothing came: None once the wait is over
        assert c.dequeue(batch=5, wait=0) == []

        def enqueue_once_listening() -> None:
            while c._listen is None:
                time.sleep(0.01)
            p.enqueue({"n": 1})

        helper = threading.Thread(target=enqueue_once_listening)
        c._close_listen()  # so the helper sees the wait's own LISTEN begin
        began = time.monotonic()
        helper.start()
        msg = c.dequeue(wait=50)
        helper.join()
        assert msg is not None and msg.payload == {"n": 1}
        assert time.monotonic() - began < 40  # woken, not the poll (a loose bound)
        c.archive(msg)
    # Without a listening worker: no NOTIFY, the polls find it.
    monkeypatch.setattr(consumer_module, "WAIT_FIRST_POLL", 0.05)
    monkeypatch.setattr(consumer_module, "WAIT_POLL_INTERVAL", 1.0)
    admin.create_queue("other")
    with pgqrs.Consumer(config, "other") as c, pgqrs.Producer(config, "other") as p:
        helper = threading.Thread(target=lambda: (time.sleep(0.3), p.enqueue({"n": 2})))
        helper.start()
        msg = c.dequeue(wait=30)
        helper.join()
        assert msg is not None and msg.payload == {"n": 2}
    with pytest.raises(pgqrs.InvalidArgument, match="wait must be"):
        pgqrs.Consumer(config, queue).dequeue(wait=-1)


async def test_async_dequeue_wait(config: pgqrs.Config, queue: str) -> None:
    async with pgqrs.aio.Consumer(config, queue) as c, pgqrs.aio.Producer(config, queue) as p:
        waiting = asyncio.create_task(c.dequeue(batch=10, wait=30))
        while c._listen is None:
            await asyncio.sleep(0.01)
        await p.enqueue_batch([{"n": 1}, {"n": 2}])
        got = await asyncio.wait_for(waiting, 30)
        assert sorted(m.payload["n"] for m in got) == [1, 2]
    assert c._listen is None  # close() closed the LISTEN connection too


# -- the cross-language fixture (tests/_tasks_xlang.py), its Python half ----------------------


def test_the_xlang_fixture_speaks_the_wire_format(
    dsn: str, schema: str, config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(__file__).with_name("_tasks_xlang.py"))

    def run(command: str) -> Any:
        done = subprocess.run(
            [sys.executable, script, command, dsn, schema],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    # Python enqueues: what a Rust worker receives.
    ids = run("enqueue")
    sent = {m.id: m for m, _state in admin.peek("xlang", limit=10)}
    assert sent[ids[0]].headers == {"pgqrs-task": "add"} and sent[ids[0]].payload == {"a": 40}
    assert sent[ids[1]].headers == {"pgqrs-task": "greet"}
    assert sent[ids[1]].payload == {"person": {"name": "Ann", "langs": ["py", "rs"]}}
    # A producer without the task's code (as Rust would) enqueues by name.
    with pgqrs.Producer(config, "xlang") as p:
        by_name = p.enqueue({"person": {"name": "Bo", "langs": []}},
                            headers={"pgqrs-task": "greet"})
    assert run("work") == {"completed": 3}
    results = {r.id: r.result for r in admin.list_archive("xlang")}
    assert results == {
        ids[0]: 42,
        ids[1]: {"greeting": "hello Ann", "langs": 2},
        by_name.id: {"greeting": "hello Bo", "langs": 0},
    }


def test_group_goes_through_to_the_producer(
    config: pgqrs.Config, queue: str, admin: pgqrs.Admin
) -> None:
    import inspect

    tasks, _, _, _, add = registry_with_tasks(config)
    try:
        if "group" not in inspect.signature(pgqrs.Producer.enqueue).parameters:
            with pytest.raises(pgqrs.InvalidArgument, match="group= needs a pgqrs with"):
                add.enqueue(1, group="tenant-42")
            pytest.skip("message groups (flow control) are not on this branch")
        handle = add.enqueue(1, group="tenant-42")
        assert handle.message is not None
        assert handle.message.group == "tenant-42"  # type: ignore[attr-defined]
    finally:
        tasks.close()
