"""Install, verify, uninstall: the schema as versioned migrations plus server functions."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest

import pgqrs
from pgqrs._sql import functions, migrations


def shipped() -> list[str]:
    """What a first install applies: every migration, then every function."""
    return [f"{m.version:04d}_{m.name}" for m in migrations()] + [f.label for f in functions()]


def tables(sql: psycopg.Connection[tuple[object, ...]], schema: str) -> set[str]:
    rows = sql.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r'",
        [schema],
    ).fetchall()
    return {str(r[0]) for r in rows}


def test_install_creates_schema_and_records_versions(
    config: pgqrs.Config, sql: psycopg.Connection
) -> None:
    with pgqrs.Admin(config) as admin:
        assert not admin.verify().installed
        applied = admin.install()
        assert applied == shipped()
        assert tables(sql, config.schema) == {
            "queues",
            "messages",
            "archive",
            "archive_waiters",
            "workers",
            "flow_leases",
            "flow_buckets",
            "schedules",
            "schedule_slots",
            "schema_migrations",
            "schema_functions",
        }
        ledger = sql.execute(
            f'SELECT version, checksum FROM "{config.schema}".schema_migrations'
        ).fetchall()
        assert ledger == [(m.version, m.checksum) for m in migrations()]
        recorded = sql.execute(
            f'SELECT name, checksum FROM "{config.schema}".schema_functions ORDER BY name'
        ).fetchall()
        assert recorded == [(f.name, f.checksum) for f in functions()]
        # Up to date: a second install is a no-op.
        assert admin.install() == []
        report = admin.verify()
        assert report.ok and report.current_version == report.latest_version == len(migrations())
        assert "up to date" in report.describe()


def test_verify_reports_missing_and_modified(config: pgqrs.Config, sql: psycopg.Connection) -> None:
    s = config.schema
    with pgqrs.Admin(config) as admin:
        admin.install()
        sql.execute(f"UPDATE \"{s}\".schema_migrations SET checksum = 'x' WHERE version = 1")
        report = admin.verify()
        assert not report.ok and report.modified == ["0001_init"]
        sql.execute(f'DELETE FROM "{s}".schema_migrations WHERE version = 1')
        report = admin.verify()
        assert report.missing == ["0001_init"] and not report.ok
        sql.execute(f"INSERT INTO \"{s}\".schema_migrations VALUES (99, 'future', 'y')")
        assert admin.verify().unknown == ["0099_future"]


def test_verify_reports_and_install_repairs_functions(
    config: pgqrs.Config, sql: psycopg.Connection
) -> None:
    """A function whose file changed, or that is gone, is reported as a migration
    would be, and install re-creates exactly those."""
    s = config.schema
    with pgqrs.Admin(config) as admin:
        admin.install()
        sql.execute(
            f"UPDATE \"{s}\".schema_functions SET checksum = 'x' WHERE name = 'message_dequeue'"
        )
        report = admin.verify()
        assert (report.ok, report.modified, report.missing) == (
            False,
            ["function message_dequeue"],
            [],
        )
        assert "changed since they were applied: function message_dequeue" in report.describe()
        assert admin.install() == ["function message_dequeue"]
        assert admin.verify().ok

        # Dropped by hand (its ledger row stays): missing, and created again.
        sql.execute(f'DROP FUNCTION "{s}".message_fail')
        report = admin.verify()
        assert (report.missing, report.modified) == (["function message_fail"], [])
        assert admin.install() == ["function message_fail"]
        # Never recorded: missing too.
        sql.execute(f"DELETE FROM \"{s}\".schema_functions WHERE name = 'queue_lock'")
        assert admin.verify().missing == ["function queue_lock"]
        assert admin.install() == ["function queue_lock"]
        assert admin.install() == []

        sql.execute(f"INSERT INTO \"{s}\".schema_functions VALUES ('from_the_future', 'y')")
        assert admin.verify().unknown == ["function from_the_future"]


def test_install_refuses_a_function_that_became_an_overload(
    config: pgqrs.Config, sql: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A function file whose arguments changed without a migration dropping the old
    signature would leave two functions: install rolls back, naming the rule."""
    import pgqrs._sync.admin as sync_admin
    from pgqrs._sql import Function

    s = config.schema
    with pgqrs.Admin(config) as admin:
        admin.install()
        before = sql.execute(
            f'SELECT checksum FROM "{s}".schema_functions ORDER BY name'
        ).fetchall()
        changed = tuple(
            Function(
                f.name,
                f.text.replace(
                    "(bigint, text, text, integer, text[], boolean)",
                    "(bigint, text, text, integer, text[], boolean, int)",
                ),
            )
            if f.name == "worker_alive"
            else f
            for f in functions()
        )
        assert changed != functions()
        monkeypatch.setattr(sync_admin, "functions", lambda: changed)
        with pytest.raises(pgqrs.DatabaseError, match="worker_alive now has 2 signatures"):
            admin.install()
        monkeypatch.undo()
        after = sql.execute(f'SELECT checksum FROM "{s}".schema_functions ORDER BY name').fetchall()
        assert after == before
        overloads = sql.execute(
            "SELECT count(*) FROM pg_proc WHERE proname = 'worker_alive' "
            "AND pronamespace = to_regnamespace(%s)",
            [s],
        ).fetchone()
        assert overloads == (1,)
        assert admin.verify().ok


def test_uninstall_drops_everything(config: pgqrs.Config, sql: psycopg.Connection) -> None:
    with pgqrs.Admin(config) as admin:
        admin.install()
        admin.create_queue("q")
        admin.uninstall()
        assert tables(sql, config.schema) == set()
        exists = sql.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", [config.schema]
        ).fetchone()
        assert exists == (0,)
        assert not admin.verify().installed
        admin.install()  # and it comes back
        assert admin.list_queues() == []


def test_uninstall_keeps_a_schema_shared_with_other_objects(
    config: pgqrs.Config, sql: psycopg.Connection
) -> None:
    with pgqrs.Admin(config) as admin:
        admin.install()
        sql.execute(f'CREATE TABLE "{config.schema}".mine (x int)')
        admin.uninstall()
        assert tables(sql, config.schema) == {"mine"}


def test_operations_before_install_say_how_to_fix(config: pgqrs.Config) -> None:
    with (
        pgqrs.Admin(config) as admin,
        pytest.raises(pgqrs.SchemaNotInstalled, match=r"Admin.install\(\)"),
    ):
        admin.create_queue("q")
    with pgqrs.Producer(config, "q") as producer, pytest.raises(pgqrs.SchemaNotInstalled):
        producer.enqueue({"a": 1})


def test_concurrent_installs_serialise(config: pgqrs.Config, sql: psycopg.Connection) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def install() -> None:
        try:
            with pgqrs.Admin(config) as admin:
                barrier.wait()
                results.append(admin.install())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, 0, len(shipped())]
    count = sql.execute(f'SELECT count(*) FROM "{config.schema}".schema_migrations').fetchone()
    assert count == (len(migrations()),)


def test_dequeue_uses_the_index_on_a_large_queue(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection
) -> None:
    admin.create_queue("big")
    admin.create_queue("other")
    s = config.schema
    sql.execute(
        f'INSERT INTO "{s}".messages (queue, payload, priority) '
        "SELECT CASE WHEN g % 10 = 0 THEN 'other' ELSE 'big' END, "
        "jsonb_build_object('n', g), g % 3 "
        "FROM generate_series(1, 100000) g"
    )
    sql.execute(f'ANALYZE "{s}".messages')
    plans = function_plans(sql, f"SELECT * FROM \"{s}\".message_dequeue('big', 10, 30, NULL)")
    (pick,) = [p["Plan"] for p in plans if "SKIP LOCKED" in p["Query Text"]]
    picking = find_node(pick, lambda n: n["Node Type"] == "Limit")
    # Rows are picked by walking the index in delivery order: no sort, no full scan.
    kinds = {n["Node Type"] for n in walk(picking)}
    assert "Sort" not in kinds and "Seq Scan" not in kinds, picking
    scan = find_node(picking, lambda n: n.get("Relation Name") == "messages")
    assert scan["Node Type"] == "Index Scan" and scan["Index Name"] == "messages_dequeue_idx"
    # The picked rows are then updated (or moved) by primary key, never by a scan.
    (lease,) = [p["Plan"] for p in plans if "UPDATE messages" in p["Query Text"]]
    updated = find_node(lease, lambda n: n.get("Operation") == "Update")
    by_key = find_node(
        updated, lambda n: n.get("Relation Name") == "messages" and n["Node Type"] != "ModifyTable"
    )
    assert by_key["Node Type"] == "Index Scan" and by_key["Index Name"].endswith("_pkey"), by_key
    for plan in (pick, lease):
        seq = [n for n in walk(plan) if n["Node Type"] == "Seq Scan" and n.get("Relation Name")]
        assert seq == [], seq


def function_plans(sql: psycopg.Connection, call: str) -> list[dict]:  # type: ignore[type-arg]
    """The plans a pgqrs function's statements run with: their cached, generic ones.

    auto_explain reports the statements run inside the function (the call is
    rolled back, so nothing stays leased).
    """
    plans: list[str] = []
    sql.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    with sql.transaction():
        sql.execute("LOAD 'auto_explain'")
        for setting, value in [
            ("log_min_duration", "0"),
            ("log_nested_statements", "on"),
            ("log_format", "json"),
            ("log_level", "notice"),
        ]:
            sql.execute(f"SET LOCAL auto_explain.{setting} = {value}")
        sql.execute(call)
        raise psycopg.Rollback()
    nested = [json.loads(p[p.index("{") :]) for p in plans if '"Query Text"' in p]
    return [p for p in nested if "messages" in p["Query Text"]]


def walk(node: dict) -> list[dict]:  # type: ignore[type-arg]
    out = [node]
    for child in node.get("Plans", []):
        out.extend(walk(child))
    return out


def find_node(node: dict, pred) -> dict:  # type: ignore[no-untyped-def, type-arg]
    found = [n for n in walk(node) if pred(n)]
    assert found, node
    return found[0]


def test_config_validation() -> None:
    with pytest.raises(pgqrs.ConfigError, match="invalid DSN"):
        pgqrs.Config.from_dsn("postgresql://[bad")
    with pytest.raises(pgqrs.ConfigError, match="invalid DSN") as info:
        pgqrs.Config.from_dsn("host=x password='secret")
    assert "secret" not in str(info.value)
    with pytest.raises(pgqrs.ConfigError, match="schema"):
        pgqrs.Config.from_dsn("postgresql://localhost/db", schema='x"; DROP TABLE y; --')
    with pytest.raises(pgqrs.ConfigError, match="unknown Config option"):
        pgqrs.Config.from_dsn("postgresql://localhost/db", visibility=3)
    with pytest.raises(pgqrs.ConfigError, match="pool"):
        pgqrs.Config.from_dsn("postgresql://localhost/db", pool_min_size=5, pool_max_size=2)
    cfg = pgqrs.Config.from_env(
        {
            "PGQRS_DSN": "postgresql://localhost/db",
            "PGQRS_SCHEMA": "jobs",
            "PGQRS_POOL_MAX_SIZE": "3",
            "PGQRS_PREPARE_STATEMENTS": "yes",
        }
    )
    assert (cfg.schema, cfg.pool_max_size, cfg.prepare_statements) == ("jobs", 3, True)
    assert pgqrs.Config.from_env({"DATABASE_URL": "postgresql://h/d"}).dsn == "postgresql://h/d"
    with pytest.raises(pgqrs.ConfigError, match="PGQRS_POOL_MAX_SIZE"):
        pgqrs.Config.from_env({"PGQRS_DSN": "postgresql://h/d", "PGQRS_POOL_MAX_SIZE": "many"})


def test_unreachable_server_is_a_clear_connection_error() -> None:
    cfg = pgqrs.Config.from_dsn("postgresql://nobody:secret@127.0.0.1:1/db", connect_timeout=2)
    with pytest.raises(pgqrs.ConnectionFailed) as info:
        pgqrs.Admin(cfg).list_queues()
    assert "127.0.0.1" in str(info.value) and "secret" not in str(info.value)
