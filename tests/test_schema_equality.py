"""A schema upgraded through the migrations equals one installed fresh.

The comparison is a dump of the catalog, not of the files: tables and their
options, columns (types, defaults, identity, nullability), constraints,
indexes, sequences, triggers, the functions' definitions and settings, and the
grants on all of them. The schema's own name is replaced by a placeholder.

For every migration version N, a schema built up to N (with and without the
functions of today) and then installed must equal the fresh one: so a later
migration that forgets a column default, or a function file that changes a
signature without the migration dropping the old one, fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

import pgqrs
import pgqrs._sync.admin as sync_admin
from pgqrs._sql import functions, migrations

CATALOG_QUERIES: dict[str, str] = {
    "schema acl": """
        SELECT n.nspacl::text[] FROM pg_namespace n WHERE n.nspname = %(s)s
    """,
    "relations": """
        SELECT c.relname, c.relkind, c.reloptions, c.relacl::text[], c.relpersistence
        FROM pg_class c
        WHERE c.relnamespace = to_regnamespace(%(s)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
        ORDER BY c.relname
    """,
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, a.attidentity, a.attgenerated,
               pg_get_expr(d.adbin, d.adrelid), a.attacl::text[], a.attcollation
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = to_regnamespace(%(s)s) AND c.relkind IN ('r', 'p')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum
    """,
    "constraints": """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE k.connamespace = to_regnamespace(%(s)s)
        ORDER BY c.relname, k.conname
    """,
    "indexes": """
        SELECT i.indexname, i.indexdef
        FROM pg_indexes i WHERE i.schemaname = %(s)s
        ORDER BY i.indexname
    """,
    "sequences": """
        SELECT c.relname, s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmax,
               s.seqmin, s.seqcache, s.seqcycle
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        WHERE c.relnamespace = to_regnamespace(%(s)s)
        ORDER BY c.relname
    """,
    "triggers": """
        SELECT t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = to_regnamespace(%(s)s) AND NOT t.tgisinternal
        ORDER BY t.tgname
    """,
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid),
               pg_get_function_result(p.oid), pg_get_functiondef(p.oid),
               p.proacl::text[], p.prosecdef, p.provolatile, p.proconfig
        FROM pg_proc p
        WHERE p.pronamespace = to_regnamespace(%(s)s)
        ORDER BY p.proname, 2
    """,
}


def catalog(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a schema is made of, with its name replaced by SCHEMA."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    pattern = re.compile(rf'"?\b{re.escape(schema)}\b"?')
    for what, query in CATALOG_QUERIES.items():
        rows = conn.execute(query, {"s": schema}).fetchall()
        dump[what] = [
            tuple(
                pattern.sub("SCHEMA", v) if isinstance(v, str) else normalise(v, pattern)
                for v in row
            )
            for row in rows
        ]
    return dump


def normalise(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, list):
        return [pattern.sub("SCHEMA", v) if isinstance(v, str) else v for v in value]
    return value


@pytest.fixture
def schemas(server_dsn: str) -> Iterator[list[str]]:
    """Extra schema names for one test, dropped afterwards."""
    made: list[str] = []
    yield made
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in made:
            conn.execute(
                pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(name))
            )


@pytest.mark.direct_only
def test_upgrading_from_every_migration_equals_a_fresh_install(
    server_dsn: str, schema: str, schemas: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = migrations()
    with pgqrs.Admin(pgqrs.Config.from_dsn(server_dsn, schema=schema)) as a:
        a.install()
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        fresh = catalog(conn, schema)
    assert any(r[0] == "messages" for r in fresh["relations"])
    assert {r[0] for r in fresh["functions"]} == {f.name for f in functions()}
    assert len(fresh["functions"]) == len(functions()), "one signature per function"

    for n in range(1, len(shipped) + 1):
        for with_functions in (False, True):
            name = f"{schema}_v{n}{'f' if with_functions else ''}"
            schemas.append(name)
            config = pgqrs.Config.from_dsn(server_dsn, schema=name)
            # The schema as version N left it (with today's functions, or none).
            monkeypatch.setattr(sync_admin, "migrations", lambda n=n: shipped[:n])
            if not with_functions:
                monkeypatch.setattr(sync_admin, "functions", lambda: ())
            with pgqrs.Admin(config) as a:
                a.install()
            monkeypatch.undo()
            # Then upgraded by this version's install.
            with pgqrs.Admin(config) as a:
                applied = a.install()
                assert applied[: len(shipped) - n] == [
                    f"{m.version:04d}_{m.name}" for m in shipped[n:]
                ]
                assert a.verify().ok
            with psycopg.connect(server_dsn, autocommit=True) as conn:
                upgraded = catalog(conn, name)
            for what in CATALOG_QUERIES:
                assert upgraded[what] == fresh[what], f"{what} differ after upgrading from {n}"

    # The dump does see the details it claims to compare.
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schemas[-1]}".queues ALTER COLUMN max_attempts SET DEFAULT 6')
        conn.execute(f'GRANT EXECUTE ON FUNCTION "{schemas[-1]}".message_fail TO PUBLIC')
        changed = catalog(conn, schemas[-1])
    assert changed["columns"] != fresh["columns"]
    assert changed["functions"] != fresh["functions"]


@pytest.mark.direct_only
def test_recreating_every_function_keeps_the_schema_and_its_grants(
    server_dsn: str, schema: str
) -> None:
    """Install re-creates a function in place (CREATE OR REPLACE): its grants stay."""
    role = f"pgqrs_eq_{schema}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE ROLE {}").format(pgsql.Identifier(role)))
    try:
        with pgqrs.Admin(pgqrs.Config.from_dsn(server_dsn, schema=schema)) as a:
            a.install()
            a.grant(role, producer=True, consumer=True)
            with psycopg.connect(server_dsn, autocommit=True) as conn:
                before = catalog(conn, schema)
                granted = [str(r[4]) for r in before["functions"] if r[0] == "message_enqueue"]
                assert any(role in acl for acl in granted)
                conn.execute(
                    pgsql.SQL("UPDATE {}.schema_functions SET checksum = 'x'").format(
                        pgsql.Identifier(schema)
                    )
                )
            assert a.install() == [f.label for f in functions()]
            assert a.verify().ok
            with psycopg.connect(server_dsn, autocommit=True) as conn:
                assert catalog(conn, schema) == before
            a.uninstall()
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(
                pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema))
            )
            conn.execute(pgsql.SQL("DROP OWNED BY {}").format(pgsql.Identifier(role)))
            conn.execute(pgsql.SQL("DROP ROLE {}").format(pgsql.Identifier(role)))
