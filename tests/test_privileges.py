"""Least privilege: ``Admin.grant`` gives real roles exactly what their job needs.

Every test logs in as a freshly created role (trust auth on the test server)
and checks both sides: what the role may do works, what it may not do fails
with a pgqrs error and changes nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from psycopg import sql as pgsql

import pgqrs

_role_ids = itertools.count(1)
RoleFactory = Callable[..., pgqrs.Config]


@pytest.fixture
def role(server_dsn: str, schema: str) -> Iterator[RoleFactory]:
    """Makes LOGIN roles (dropped afterwards) and returns a Config that logs in as one."""
    made: list[str] = []

    def make(name: str | None = None) -> pgqrs.Config:
        name = name or f"pgqrs_role_{os.getpid()}_{next(_role_ids)}"
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(pgsql.SQL("CREATE ROLE {} LOGIN").format(pgsql.Identifier(name)))
        made.append(name)
        dsn = psycopg.conninfo.make_conninfo(server_dsn, user=name)
        return pgqrs.Config.from_dsn(dsn, schema=schema, pool_max_size=2, pool_min_size=0)

    yield make
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in made:
            ident = pgsql.Identifier(name)
            conn.execute(pgsql.SQL("DROP OWNED BY {}").format(ident))
            conn.execute(pgsql.SQL("DROP ROLE {}").format(ident))


def user_of(config: pgqrs.Config) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(config.dsn)["user"])


def refused(call: Callable[[], Any]) -> pgqrs.Error:
    with pytest.raises(pgqrs.Error) as caught:
        call()
    assert "permission denied" in str(caught.value), caught.value
    return caught.value


def test_producer_can_enqueue_but_not_dequeue_archive_or_purge(
    owner: pgqrs.Admin, role: RoleFactory
) -> None:
    config = role()
    statements = owner.grant(user_of(config), producer=True)
    assert statements and all(s.startswith("GRANT ") for s in statements)
    with pgqrs.Producer(config, "tasks") as p:
        p.enqueue({"from": "producer"})
        p.enqueue_batch([{"b": 1}, {"b": 2}], priority=3, delay=0)
        first = p.enqueue({"d": 1}, dedup_key="once")
        again = p.enqueue({"d": 1}, dedup_key="once")  # the ON CONFLICT path
        assert again.id == first.id and not again.inserted
    with pgqrs.Consumer(config, "tasks") as c:
        refused(c.dequeue)
    with pgqrs.Consumer(owner.config, "tasks") as real:
        msg = real.dequeue()
        assert msg is not None
        with pgqrs.Consumer(config, "tasks") as c:
            refused(lambda: c.archive(msg))
            refused(lambda: c.delete(msg))
            refused(lambda: c.release(msg))
        real.archive(msg)  # the lease was untouched by the refused calls
    with pgqrs.Admin(config) as a:
        refused(lambda: a.purge_queue("tasks"))
        refused(lambda: a.delete_queue("tasks"))
        refused(lambda: a.create_queue("other"))
        refused(lambda: a.purge_archive(older_than=0))
    stats = owner.queue_stats("tasks")
    assert stats.ready == 2 + 4 - 1 and stats.archived == {"completed": 1}


def test_consumer_settles_messages_but_cannot_manage_queues(
    owner: pgqrs.Admin, role: RoleFactory
) -> None:
    config = role()
    owner.grant(user_of(config), consumer=True)
    with pgqrs.Consumer(config, "tasks") as c:
        a, b = c.dequeue(batch=2)
        c.extend(a, 60)
        c.release(b, error={"retry": True})
        c.archive(a, result={"ok": 1})
        b2 = c.dequeue()
        assert b2 is not None and b2.id == b.id
        c.delete(b2)
    with pgqrs.Producer(config, "tasks") as p:
        refused(lambda: p.enqueue({"x": 1}))
    with pgqrs.Admin(config) as adm:
        refused(lambda: adm.delete_queue("tasks"))
        refused(lambda: adm.create_queue("other"))
        refused(lambda: adm.pause_queue("tasks"))
        refused(lambda: adm.purge_archive(older_than=0))
        refused(lambda: adm.queue_stats("tasks"))  # dashboards: the read-only role
    assert owner.queue_stats("tasks").archived == {"completed": 1}
    assert [q.name for q in owner.list_queues()] == ["tasks"]


def test_consumer_can_run_dead_lettering(owner: pgqrs.Admin, role: RoleFactory) -> None:
    """Dequeue moves exhausted messages to the archive: a consumer needs that INSERT."""
    owner.create_queue("once", max_attempts=1, visibility_timeout=0.01)
    with pgqrs.Producer(owner.config, "once") as p:
        p.enqueue({"x": 1})
    config = role()
    owner.grant(user_of(config), consumer=True)
    with pgqrs.Consumer(config, "once") as c:
        assert c.dequeue() is not None
        deadline_tries = 200
        while owner.queue_stats("once").archived.get("dead") != 1 and deadline_tries:
            c.dequeue()
            deadline_tries -= 1
    assert owner.queue_stats("once").archived == {"dead": 1}


def test_admin_manages_queues_but_does_not_own_the_schema(
    owner: pgqrs.Admin, role: RoleFactory
) -> None:
    config = role()
    owner.grant(user_of(config), admin=True)
    with pgqrs.Admin(config) as a:
        a.create_queue("made_by_admin")
        a.pause_queue("tasks")
        a.resume_queue("tasks")
        assert a.purge_queue("tasks") == 2
        a.delete_queue("made_by_admin")
        assert a.purge_archive(older_than=0) == 0
        a.reap_workers()
        assert a.verify().ok
    with psycopg.connect(config.dsn, autocommit=True) as conn, pytest.raises(psycopg.Error):
        conn.execute(f'CREATE TABLE "{owner.config.schema}".intruder (x int)')


def test_grant_is_idempotent_and_combines(owner: pgqrs.Admin, role: RoleFactory) -> None:
    config = role()
    who = user_of(config)
    owner.grant(who, producer=True)
    owner.grant(who, producer=True)
    owner.grant(who, consumer=True)
    with pgqrs.Producer(config, "tasks") as p, pgqrs.Consumer(config, "tasks") as c:
        p.enqueue({"n": 3})
        assert len(c.dequeue(batch=10)) == 3


@pytest.mark.parametrize(
    "name",
    ['we"ird', "O'Brien; DROP TABLE x;--", "MixedCase", "space name", "rôle_队", "%s%I"],
)
def test_role_names_are_quoted_identifiers(
    name: str, owner: pgqrs.Admin, role: RoleFactory
) -> None:
    config = role(name)
    statements = owner.grant(name, producer=True)
    assert any(pgsql.Identifier(name).as_string(None) in s for s in statements), statements
    with pgqrs.Producer(config, "tasks") as p:
        p.enqueue({"by": name})
    assert owner.queue_stats("tasks").ready == 3


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("", {"producer": True}),
        ("a\x00b", {"producer": True}),
        ("r" * 64, {"producer": True}),
        ("public", {"producer": True}),
        ("\ud800", {"producer": True}),
        ("no_such_role_anywhere", {"producer": True}),
        ('x"; DROP TABLE tasks;--', {"consumer": True}),
        ("postgres", {}),
        ("postgres", {"producer": 1}),
    ],
)
def test_bad_grants_get_invalid_argument(
    name: str, flags: dict[str, Any], owner: pgqrs.Admin, sql: psycopg.Connection[Any]
) -> None:
    before = sql.execute("SELECT count(*) FROM pg_roles").fetchone()
    with pytest.raises(pgqrs.InvalidArgument):
        owner.grant(name, **flags)
    assert sql.execute("SELECT count(*) FROM pg_roles").fetchone() == before


def test_grant_on_missing_schema(role: RoleFactory, server_dsn: str) -> None:
    config = role()
    with (
        pgqrs.Admin(pgqrs.Config.from_dsn(server_dsn, schema="never_installed")) as a,
        pytest.raises(pgqrs.SchemaNotInstalled),
    ):
        a.grant(user_of(config), consumer=True)


def test_consumer_can_register_and_heartbeat_as_a_worker(
    owner: pgqrs.Admin, role: RoleFactory
) -> None:
    """The worker runtime's own queries (register, heartbeat, stop) run as a consumer."""
    from pgqrs._sync._calls import worker_alive, worker_register, worker_stop
    from pgqrs._sync._db import Database

    config = role()
    owner.grant(user_of(config), consumer=True)
    db = Database(config)
    me = {"hostname": "host", "pid": os.getpid(), "queues": ["tasks"], "listening": True}
    try:
        worker = worker_register(db, **me)  # type: ignore[arg-type]
        beat = worker_alive(db, worker_id=worker, status="running", **me)  # type: ignore[arg-type]
        assert (beat.status, beat.registered) == ("running", False)
        worker_stop(db, worker_id=worker)
    finally:
        db.close()
    assert [w.status for w in owner.list_workers()] == ["stopped"]


def test_consumer_can_run_the_sql_decisions(
    owner: pgqrs.Admin, role: RoleFactory, server_dsn: str
) -> None:
    """message_fail (retry or dead) and worker_alive (re-registering a pruned
    worker under its id) run as a consumer; a producer may not fail messages."""
    from pgqrs._ops import Failure
    from pgqrs._sync._calls import message_fail, worker_alive, worker_register
    from pgqrs._sync._db import Database

    backoff = {"backoff_base": 1.0, "backoff_max": 10.0, "backoff_jitter": 0.0}
    config, producer = role(), role()
    owner.grant(user_of(config), consumer=True)
    owner.grant(user_of(producer), producer=True)
    db, pdb = Database(config), Database(producer)
    try:
        with pgqrs.Consumer(config, "tasks") as c:
            first, second = c.dequeue(batch=2)
        refused(lambda: message_fail(pdb, failures=[Failure(first)], **backoff))
        out = message_fail(db, failures=[Failure(first), Failure(second, dead=True)], **backoff)
        assert [o.outcome for o in out] == ["retried", "dead"]
        beat = {"hostname": "h", "pid": 1, "queues": ["tasks"], "listening": True}
        worker = worker_register(db, **beat)  # type: ignore[arg-type]
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DELETE FROM "{owner.config.schema}".workers')
        again = worker_alive(db, worker_id=worker, status="running", **beat)  # type: ignore[arg-type]
        assert again.registered
    finally:
        db.close()
        pdb.close()
    assert owner.queue_stats("tasks").archived == {"dead": 1}
    assert [w.id for w in owner.list_workers()] == [worker]


def pgqrs_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQRS_")}
    return subprocess.run(
        [str(Path(sys.executable).with_name("pgqrs")), *args],
        capture_output=True,
        text=True,
        env={**env, "PGQRS_EMBEDDED": "0"},
        timeout=60,
    )


def test_cli_grant(owner: pgqrs.Admin, role: RoleFactory, server_dsn: str) -> None:
    config = role()
    who = user_of(config)
    base = ["--dsn", server_dsn, "--schema", owner.config.schema]
    done = pgqrs_cli(*base, "--json", "grant", who, "--producer")
    assert done.returncode == 0, done.stderr
    statements = json.loads(done.stdout)["statements"]
    assert statements and all(s.startswith("GRANT") for s in statements)
    with pgqrs.Producer(config, "tasks") as p:
        p.enqueue({"via": "cli grant"})
    with pgqrs.Consumer(config, "tasks") as c:
        refused(c.dequeue)
    nothing = pgqrs_cli(*base, "grant", who)
    assert nothing.returncode == 2 and "nothing to grant" in nothing.stderr, nothing.stderr
    missing = pgqrs_cli(*base, "grant", "no_such_role_here", "--consumer")
    assert missing.returncode == 2 and "does not exist" in missing.stderr, missing.stderr
