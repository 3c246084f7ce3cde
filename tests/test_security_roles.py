"""Real least privilege, tried as an attacker would: every role given by
``Admin.grant`` acts only through pgqrs's server functions.

For each role kind, a login role tries every direct statement on every pgqrs
table (read, write, row locks, table locks, the identity sequences, the
ledgers) and every server function outside its job: each one must fail with
``permission denied`` (SQLSTATE 42501). Then the same role does its job
through the pgqrs API (Python, and the Rust conformance binary). The server
functions run as the schema's owner, so they check their own arguments and
cannot be pointed at another schema. And ``uninstall`` drops only pgqrs's own
objects.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from psycopg import sql as pgsql

import pgqrs
from pgqrs._sql import functions

_role_ids = itertools.count(1)
RoleFactory = Callable[..., tuple[str, pgqrs.Config]]

TABLES = (
    "queues",
    "messages",
    "archive",
    "workers",
    "schedules",
    "schedule_slots",
    "archive_waiters",
    "flow_leases",
    "flow_buckets",
    "schema_migrations",
    "schema_functions",
)
LEDGERS = ("schema_migrations", "schema_functions")
#: One column of each table, for UPDATE statements.
COLUMN = {
    "queues": "paused",
    "messages": "payload",
    "archive": "status",
    "archive_waiters": "expires_at",
    "workers": "status",
    "schedules": "paused",
    "schedule_slots": "slot",
    "flow_leases": "lease",
    "flow_buckets": "tokens",
    "schema_migrations": "checksum",
    "schema_functions": "checksum",
}
#: Functions no role may call: only other pgqrs functions (running as the owner) do.
INTERNAL = {"queue_lock", "message_dequeue_limited", "flow_check", "archive_notify", "json_check"}
#: The server functions each role kind may call (admin: all but the internal ones).
JOBS: dict[str, set[str]] = {
    # A producer may wait for what it enqueued (Message.wait).
    "producer": {"message_insert", "message_enqueue", "archive_get", "archive_wait"},
    "consumer": {
        "message_dequeue",
        "message_archive",
        "message_delete",
        "message_extend",
        "message_release",
        "message_fail",
        "queue_get",
        "worker_register",
        "worker_alive",
        "worker_stop",
        "worker_reap",
        # A worker declares its schedules at start and fires them.
        "schedule_upsert",
        "schedule_due",
        "schedule_fire",
        # A running handler's progress, the worker's cancel poll, retention.
        "message_set_progress",
        "message_cancelled",
        "archive_prune",
    },
    "read_only": {
        "queue_get",
        "queue_list",
        "queue_stats",
        "message_peek",
        "archive_list",
        "archive_get",
        "archive_wait",
        "worker_list",
        "metrics_scrape",
        "schedule_list",
        # The web dashboard's pages (its actions are admin's).
        "dashboard_archive_counts",
        "dashboard_archive_search",
        "dashboard_estimate_archived",
        "dashboard_estimate_delayed",
        "dashboard_estimate_in_flight",
        "dashboard_estimate_ready",
        "dashboard_message",
        "dashboard_messages",
        "dashboard_oldest_ready",
        "dashboard_queues",
        "dashboard_running",
        "dashboard_schedules",
        "dashboard_series_archived",
        "dashboard_series_enqueued_archive",
        "dashboard_series_enqueued_messages",
        "dashboard_workers",
    },
}
JOBS["admin"] = {f.name for f in functions()} - INTERNAL
KINDS = tuple(JOBS)


@pytest.fixture
def role(server_dsn: str, schema: str) -> Iterator[RoleFactory]:
    """Makes a LOGIN role (dropped afterwards) given ``kind`` by Admin.grant; returns
    its name and a Config that logs in as it."""
    made: list[str] = []

    def make(kind: str) -> tuple[str, pgqrs.Config]:
        name = f"pgqrs_sec_{kind}_{os.getpid()}_{next(_role_ids)}"
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(pgsql.SQL("CREATE ROLE {} LOGIN").format(pgsql.Identifier(name)))
        made.append(name)
        dsn = psycopg.conninfo.make_conninfo(server_dsn, user=name)
        config = pgqrs.Config.from_dsn(dsn, schema=schema, pool_max_size=2, pool_min_size=0)
        with pgqrs.Admin(pgqrs.Config.from_dsn(server_dsn, schema=schema)) as a:
            a.grant(name, **{kind: True})
        return name, config

    yield make
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in made:
            ident = pgsql.Identifier(name)
            conn.execute(pgsql.SQL("DROP OWNED BY {}").format(ident))
            conn.execute(pgsql.SQL("DROP ROLE {}").format(ident))


def denied(conn: psycopg.Connection[Any], statement: str) -> None:
    """``statement`` fails with permission denied, in its own transaction."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute(statement)  # type: ignore[call-overload]


def forbidden_statements(schema: str, table: str, ledger_readable: bool) -> list[str]:
    t = f'"{schema}"."{table}"'
    col = COLUMN[table]
    statements = [
        f"INSERT INTO {t} DEFAULT VALUES",
        f"UPDATE {t} SET {col} = {col}",
        f"DELETE FROM {t}",
        f"TRUNCATE {t}",
        f"SELECT 1 FROM {t} FOR UPDATE",
        f"SELECT 1 FROM {t} FOR KEY SHARE",
        f"LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE",
        f"LOCK TABLE {t} IN ROW EXCLUSIVE MODE",
    ]
    if not (ledger_readable and table in LEDGERS):
        statements += [f"SELECT * FROM {t}", f"LOCK TABLE {t} IN ACCESS SHARE MODE"]
    return statements


def call_with_nulls(conn: psycopg.Connection[Any], schema: str, name: str) -> str:
    """A call of function ``name`` with a NULL of each argument type."""
    row = conn.execute(
        "SELECT pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
        "WHERE p.proname = %s AND p.pronamespace = to_regnamespace(%s)",
        (name, schema),
    ).fetchone()
    assert row is not None, name
    args = ", ".join(f"NULL::{a.strip()}" for a in row[0].split(",") if a.strip())
    return f'SELECT * FROM "{schema}".{name}({args})'


@pytest.mark.parametrize("kind", KINDS)
def test_every_forbidden_statement_is_refused(
    kind: str, owner: pgqrs.Admin, role: RoleFactory, server_dsn: str
) -> None:
    """Direct table access, row and table locks, sequences, the ledgers, DDL, and
    every function outside the role's job: permission denied, nothing changed."""
    schema = owner.config.schema
    name, config = role(kind)
    ledger_readable = kind in ("admin", "read_only")
    with psycopg.connect(config.dsn, autocommit=True) as conn:
        for table in TABLES:
            for statement in forbidden_statements(schema, table, ledger_readable):
                denied(conn, statement)
        for seq in ("messages_id_seq", "workers_id_seq"):
            denied(conn, f"SELECT nextval('\"{schema}\".{seq}')")
            denied(conn, f"SELECT setval('\"{schema}\".{seq}', 1000000)")
            denied(conn, f'SELECT last_value FROM "{schema}".{seq}')
        denied(conn, f'CREATE TABLE "{schema}".intruder (x int)')
        denied(
            conn, f'CREATE FUNCTION "{schema}".intruder() RETURNS int LANGUAGE sql AS $$SELECT 1$$'
        )
        denied(conn, f'ALTER FUNCTION "{schema}".queue_lock(text) SECURITY INVOKER')
        denied(conn, f'GRANT EXECUTE ON FUNCTION "{schema}".queue_lock(text) TO PUBLIC')
        for function in functions():
            if function.name == "archive_notify":
                # The archive's trigger function cannot be called at all; the
                # role does not even hold EXECUTE on it.
                held = conn.execute(
                    "SELECT has_function_privilege(%s, 'EXECUTE')",
                    (f'"{schema}".archive_notify()',),
                ).fetchone()
                assert held == (False,)
                continue
            if function.name not in JOBS[kind]:
                denied(conn, call_with_nulls(conn, schema, function.name))
        if ledger_readable:
            assert conn.execute(f'SELECT count(*) FROM "{schema}".schema_migrations').fetchone()
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        privileges = conn.execute(
            "SELECT c.relname, p.privilege_type FROM pg_class c "
            "CROSS JOIN LATERAL aclexplode(c.relacl) p "
            "WHERE c.relnamespace = to_regnamespace(%s) AND p.grantee = to_regrole(%s)",
            (schema, name),
        ).fetchall()
        callable_ = {
            r[0]
            for r in conn.execute(
                "SELECT p.proname FROM pg_proc p "
                "WHERE p.pronamespace = to_regnamespace(%s) "
                "AND has_function_privilege(%s, p.oid, 'EXECUTE')",
                (schema, name),
            )
        }
    expected = {(t, "SELECT") for t in LEDGERS} if ledger_readable else set()
    assert set(privileges) == expected
    assert callable_ == JOBS[kind]
    assert owner.queue_stats("tasks").ready == 2 and owner.verify().ok


def test_server_functions_are_definer_pinned_and_not_public(owner: pgqrs.Admin) -> None:
    """Every pgqrs function runs as its owner with search_path pinned to the
    schema then pg_temp, and PUBLIC may not execute any of them."""
    schema = owner.config.schema
    with psycopg.connect(owner.config.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT p.proname, p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner), "
            "EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a "
            "        WHERE a.grantee = 0) AS public_execute, current_user "
            "FROM pg_proc p WHERE p.pronamespace = to_regnamespace(%s)",
            (schema,),
        ).fetchall()
    assert {r[0] for r in rows} == {f.name for f in functions()}
    for name, definer, config, owner_name, public_execute, me in rows:
        assert definer, name
        assert f'search_path="{schema}", pg_temp' in config or (
            f"search_path={schema}, pg_temp" in config
        ), (name, config)
        assert owner_name == me, name
        assert not public_execute, name


def test_every_function_belongs_to_a_job() -> None:
    """A new server function must be given to a role (or be internal like
    queue_lock): role_grant names functions, and this list follows it."""
    sql_text = (Path(__file__).resolve().parents[1] / "sql/queries/role_grant.sql").read_text()
    for function in functions():
        if function.name in INTERNAL:
            assert f"'{function.name}'" not in sql_text
            continue
        assert f"'{function.name}')" in sql_text, function.name


def test_a_role_cannot_point_a_function_at_its_own_tables(
    owner: pgqrs.Admin, role: RoleFactory
) -> None:
    """search_path is pinned to the schema, pg_temp last: temporary tables or
    functions of the caller's named like pgqrs's are never used."""
    _, config = role("admin")
    schema = owner.config.schema
    with psycopg.connect(config.dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE queues (name text, paused boolean)")
        conn.execute("INSERT INTO pg_temp.queues VALUES ('tasks', true), ('evil', false)")
        conn.execute("CREATE TEMP TABLE messages (id bigint, queue text)")
        conn.execute("SET search_path = pg_temp, public")
        rows = conn.execute(f'SELECT name, paused FROM "{schema}".queue_list()').fetchall()
        assert rows == [("tasks", False)]
        leased = conn.execute(
            f"SELECT outcome, id FROM \"{schema}\".message_dequeue('tasks', 10, NULL, NULL)"
        ).fetchall()
        assert [r[0] for r in leased] == ["leased", "leased"]


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        ("message_dequeue('tasks', -1, NULL, NULL)", "batch"),
        ("message_dequeue('tasks', 0, NULL, NULL)", "batch"),
        ("message_dequeue('tasks', 1, 'NaN', NULL)", "visibility_timeout"),
        ("message_dequeue('tasks', 1, -5, NULL)", "visibility_timeout"),
        ("message_extend(ARRAY[1::bigint], ARRAY[gen_random_uuid()], -1)", "seconds"),
        (
            "message_release(ARRAY[1::bigint], ARRAY[gen_random_uuid()], ARRAY['Infinity'::float8],"
            " NULL, NULL)",
            "delays",
        ),
        (
            "message_fail(ARRAY[1::bigint], ARRAY[gen_random_uuid()], NULL, NULL, NULL, 1, 10, 7)",
            "jitter",
        ),
        (
            "message_archive(ARRAY[1::bigint], ARRAY[gen_random_uuid()], ARRAY['DROP TABLE'], NULL,"
            " NULL)",
            "statuses",
        ),
        ("worker_alive(999999999, 'running', 'h', 1, ARRAY['tasks'], true)", "never registered"),
        ("worker_alive(-1, 'running', 'h', 1, ARRAY['tasks'], true)", "never registered"),
        ("worker_alive(1, 'dead', 'h', 1, ARRAY['tasks'], true)", "running or stopping"),
        ("queue_create('q', 0, 5, NULL, NULL, NULL, NULL, NULL)", "visibility_timeout"),
        ("queue_create('q', 30, -2, NULL, NULL, NULL, NULL, NULL)", "max_attempts"),
        ("queue_create('q', 30, 5, 0, NULL, NULL, NULL, NULL)", "concurrency_limit"),
        ("queue_create('q', 30, 5, NULL, NULL, 10, 0, NULL)", "period"),
        (
            "queue_update('tasks', false, NULL, true, -1, false, NULL, NULL, NULL)",
            "group_concurrency",
        ),
        ("message_insert('tasks', '[1]', 0, NULL, NULL, NULL, '')", "group"),
        ("archive_purge(-1, NULL, NULL)", "older_than"),
        ("worker_reap('NaN', 1)", "dead_after"),
        ("message_peek('tasks', -1)", "limit"),
        ("archive_list(NULL, NULL, 0)", "limit"),
        ("message_cancel(NULL)", "ids"),
        ("message_cancel(ARRAY[NULL::bigint])", "ids"),
        ("archive_get(NULL)", "ids"),
        ("archive_wait(ARRAY[1::bigint], -1)", "seconds"),
        ("archive_prune('tasks', 0)", "batch"),
        ("queue_set_archive_retention('tasks', 0)", "archive_retention"),
        ("message_set_progress(1, NULL, '{}')", "needs a message id"),
        ("message_cancelled(NULL)", "worker id"),
        ("dashboard_messages('tasks', NULL, NULL, 10, 'gone', 5)", "state"),
        ("dashboard_messages('tasks', 1, NULL, 10, NULL, 5)", "keyset"),
        ("dashboard_queues(0, NULL)", "sample limit"),
        ("dashboard_archive_counts(10, 'NaN', NULL)", "window"),
        ("dashboard_series_archived('tasks', 60, -1)", "rows per status"),
        ("dashboard_workers(NULL)", "limit"),
        ("dashboard_message_retry(NULL)", "message id"),
    ],
)
def test_definer_functions_check_their_arguments(
    call: str, fragment: str, owner: pgqrs.Admin, role: RoleFactory
) -> None:
    """Called directly (not through a client that checks first), a server
    function refuses bad arguments itself, with SQLSTATE PQ001 (InvalidArgument)."""
    _, config = role("admin")
    with (
        psycopg.connect(config.dsn, autocommit=True) as conn,
        pytest.raises(psycopg.Error) as caught,
    ):
        conn.execute(f'SELECT * FROM "{owner.config.schema}".{call}')  # type: ignore[call-overload]
    assert caught.value.sqlstate == "PQ001", caught.value
    assert fragment in str(caught.value)
    assert owner.queue_stats("tasks").ready == 2


def test_invalid_argument_reaches_clients_as_invalid_argument(
    owner: pgqrs.Admin, role: RoleFactory
) -> None:
    from pgqrs._sync._db import Database

    _, config = role("consumer")
    db = Database(config)
    try:
        with pytest.raises(pgqrs.InvalidArgument, match="running or stopping"):
            # The statement as sent, past the client's own check of the status.
            db.fetch_tuples("worker_alive", [1, "dead", "h", 1, ["tasks"], True])
    finally:
        db.close()


def refused(call: Callable[[], Any]) -> None:
    with pytest.raises(pgqrs.Error) as caught:
        call()
    assert "permission denied" in str(caught.value), caught.value


def test_read_only_role_sees_but_cannot_change(owner: pgqrs.Admin, role: RoleFactory) -> None:
    with pgqrs.Consumer(owner.config, "tasks") as c:
        done = c.dequeue()
        assert done is not None
        c.archive(done, result={"ok": True})
        held = c.dequeue()
        assert held is not None
        _, config = role("read_only")
        with pgqrs.Admin(config) as ro:
            assert [q.name for q in ro.list_queues()] == ["tasks"]
            assert ro.get_queue("tasks").max_attempts == owner.get_queue("tasks").max_attempts
            stats = ro.queue_stats("tasks")
            assert (stats.ready, stats.in_flight, stats.archived) == (0, 1, {"completed": 1})
            peeked = ro.peek("tasks")
            assert [(m.id, state) for m, state in peeked] == [(held.id, "in_flight")]
            assert peeked[0][0].lease is None  # never another consumer's lease token
            assert [a.id for a in ro.list_archive("tasks")] == [done.id]
            assert ro.list_workers() == []
            assert ro.verify().ok
            refused(lambda: ro.create_queue("other"))
            refused(lambda: ro.pause_queue("tasks"))
            refused(lambda: ro.purge_queue("tasks"))
            refused(lambda: ro.delete_queue("tasks"))
            refused(lambda: ro.purge_archive(older_than=0))
            refused(lambda: ro.redrive("tasks", status="completed"))
            refused(lambda: ro.reap_workers())
        with pgqrs.Producer(config, "tasks") as p:
            refused(lambda: p.enqueue({"x": 1}))
        with pgqrs.Consumer(config, "tasks") as rc:
            refused(rc.dequeue)
            refused(lambda: rc.archive(held))
        c.archive(held)  # the lease was untouched
    assert owner.queue_stats("tasks").archived == {"completed": 2}


def test_producer_sees_only_what_its_enqueue_returns(owner: pgqrs.Admin, role: RoleFactory) -> None:
    _, config = role("producer")
    with pgqrs.Producer(config, "tasks") as p:
        mine = p.enqueue({"mine": True}, dedup_key="k")
        assert p.enqueue({"ignored": True}, dedup_key="k").id == mine.id
    with pgqrs.Producer(config, "nope") as p, pytest.raises(pgqrs.QueueNotFound):
        p.enqueue({"x": 1})
    with pgqrs.Admin(config) as a:
        refused(lambda: a.peek("tasks"))
        refused(lambda: a.list_archive())
        refused(lambda: a.list_queues())
        refused(lambda: a.queue_stats("tasks"))
        refused(lambda: a.list_workers())
        with pytest.raises(pgqrs.Error):
            a.verify()
    assert owner.queue_stats("tasks").ready == 3


def test_admin_does_every_api_operation(owner: pgqrs.Admin, role: RoleFactory) -> None:
    _, config = role("admin")
    with (
        pgqrs.Admin(config) as a,
        pgqrs.Producer(config, "tasks") as p,
        pgqrs.Consumer(config, "tasks") as c,
    ):
        a.create_queue("made", max_attempts=1, visibility_timeout=5)
        a.pause_queue("made")
        a.resume_queue("made")
        p.enqueue({"n": 3})
        first, second, third = c.dequeue(batch=3)
        c.extend(first, 30)
        c.archive(first)
        c.release(second)
        c.archive(third, status="dead")
        assert a.redrive("tasks") == [third.id]
        assert a.purge_queue("tasks") == 2
        assert a.purge_archive(older_than=0, queue="tasks") == 1
        assert [q.name for q in a.list_queues()] == ["made", "tasks"]
        assert a.peek("tasks") == []
        assert a.list_archive() == []
        a.reap_workers()
        a.delete_queue("made")
        assert a.verify().ok
        refused(lambda: a.install())


def test_consumer_runs_a_python_worker(owner: pgqrs.Admin, role: RoleFactory) -> None:
    """Register, heartbeat, reap, dequeue, archive and stop: all as a consumer."""
    _, config = role("consumer")
    worker = pgqrs.Worker(config, queues=["tasks"], poll_interval=0.05)

    @worker.handler("tasks")
    def handle(msg: pgqrs.Message) -> int:
        return int(msg.payload["n"]) * 10

    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while owner.queue_stats("tasks").archived.get("completed") != 2:
            assert time.monotonic() < deadline, owner.queue_stats("tasks")
            time.sleep(0.05)
    finally:
        worker.stop()
        runner.join(15)
    assert not runner.is_alive()
    assert [w.status for w in owner.list_workers()] == ["stopped"]
    assert sorted(m.result for m in owner.list_archive("tasks")) == [10, 20]


@pytest.fixture(scope="module")
def rust_binary() -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed")
    rust_dir = Path(__file__).resolve().parents[1] / "rust"
    subprocess.run(
        [cargo, "build", "--quiet", "--example", "conformance"],
        cwd=rust_dir,
        check=True,
        timeout=900,
    )
    return rust_dir / "target" / "debug" / "examples" / "conformance"


def test_rust_client_under_least_privilege(
    owner: pgqrs.Admin, role: RoleFactory, rust_binary: Path
) -> None:
    """The Rust client: a producer enqueues and may not dequeue; a consumer's
    Rust worker registers, settles and stops; a read-only role reads stats."""

    def rust(config: pgqrs.Config, *args: object) -> tuple[int, Any]:
        env = {**os.environ, "PGQRS_DSN": config.dsn, "PGQRS_SCHEMA": config.schema}
        proc = subprocess.run(
            [str(rust_binary), *map(str, args)], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode in (0, 2), proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    _, producer = role("producer")
    _, consumer = role("consumer")
    _, reader = role("read_only")
    code, out = rust(producer, "enqueue", "tasks", '{"n": 3}')
    assert code == 0 and out["queue"] == "tasks"
    code, out = rust(producer, "dequeue", "tasks")
    assert code == 2 and "permission denied" in out["message"]
    # The consumer's Rust worker (conformance `serve`: closing its stdin stops it).
    env = {**os.environ, "PGQRS_DSN": consumer.dsn, "PGQRS_SCHEMA": consumer.schema}
    worker = subprocess.Popen(
        [str(rust_binary), "serve", "tasks"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while owner.queue_stats("tasks").archived.get("completed", 0) < 3:
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the Rust worker did not complete 3 jobs in 60 s"
            time.sleep(0.05)
        out_text, err_text = worker.communicate(input="", timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err_text
    assert json.loads(out_text)["completed"] == 3
    code, out = rust(reader, "stats", "tasks")
    assert code == 0 and out["archived"] == {"completed": 3}
    code, out = rust(reader, "create-queue", "other")
    assert code == 2 and "permission denied" in out["message"]
    assert [w.status for w in owner.list_workers()] == ["stopped"]


# -- uninstall -------------------------------------------------------------------------------------


def pgqrs_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQRS_")}
    return subprocess.run(
        [str(Path(sys.executable).with_name("pgqrs")), *args],
        capture_output=True,
        text=True,
        env={**env, "PGQRS_EMBEDDED": "0"},
        timeout=60,
    )


def test_uninstall_where_pgqrs_is_not_installed_drops_nothing(server_dsn: str) -> None:
    """`pgqrs --schema public uninstall --yes` next to an application's own
    public.messages table and a view on it: both survive, and it says so."""
    table = f"messages_{os.getpid()}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.messages CASCADE")
        conn.execute("CREATE TABLE public.messages (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO public.messages VALUES (1, 'mine')")
        conn.execute("CREATE VIEW public.my_messages AS SELECT body FROM public.messages")
        conn.execute(f"CREATE TABLE public.{table} (x int)")
        try:
            done = pgqrs_cli("--dsn", server_dsn, "--schema", "public", "uninstall", "--yes")
            assert done.returncode == 0, done.stderr
            assert "not installed" in done.stdout and "nothing was dropped" in done.stdout
            as_json = pgqrs_cli(
                "--dsn", server_dsn, "--schema", "public", "--json", "uninstall", "--yes"
            )
            assert json.loads(as_json.stdout)["uninstalled"] is False
            assert conn.execute("SELECT body FROM public.my_messages").fetchall() == [("mine",)]
            with pgqrs.Admin(pgqrs.Config.from_dsn(server_dsn, schema="public")) as a:
                assert a.uninstall() is False
            assert conn.execute(f"SELECT to_regclass('public.{table}')").fetchone() != (None,)
        finally:
            conn.execute("DROP VIEW IF EXISTS public.my_messages")
            conn.execute("DROP TABLE IF EXISTS public.messages")
            conn.execute(f"DROP TABLE IF EXISTS public.{table}")


def test_uninstall_keeps_user_objects_and_never_cascades(
    owner: pgqrs.Admin, server_dsn: str
) -> None:
    """In a schema holding pgqrs and the user's objects: a user view on a pgqrs
    table makes uninstall fail and roll back (no CASCADE); without it,
    uninstall drops pgqrs's objects only, and the schema stays."""
    schema = owner.config.schema
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".mine (x int)')
        conn.execute(f'CREATE FUNCTION "{schema}".my_fn() RETURNS int LANGUAGE sql AS $$SELECT 1$$')
        conn.execute(f'CREATE VIEW "{schema}".dead_letters AS SELECT id FROM "{schema}".archive')
        with pytest.raises(pgqrs.DatabaseError, match="depend"):
            owner.uninstall()
        assert owner.verify().ok and owner.queue_stats("tasks").ready == 2
        conn.execute(f'DROP VIEW "{schema}".dead_letters')
        assert owner.uninstall() is True
        left = {
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = to_regnamespace(%s) "
                "UNION ALL SELECT proname FROM pg_proc WHERE pronamespace = to_regnamespace(%s)",
                (schema, schema),
            )
        }
        assert left == {"mine", "my_fn"}
        assert not owner.verify().installed
        assert owner.uninstall() is False
        conn.execute(f'DROP TABLE "{schema}".mine')
        conn.execute(f'DROP FUNCTION "{schema}".my_fn()')


def test_uninstall_of_an_own_schema_drops_it(owner: pgqrs.Admin, server_dsn: str) -> None:
    assert owner.uninstall() is True
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace(%s)", (owner.config.schema,)).fetchone() == (
            None,
        )
