"""The named queries, migrations and server functions, read from the one ``sql/`` folder.

The same files are embedded in the Rust crate. They use psql-style
placeholders for the schema (``:"schema"`` and ``:'schema'``), replaced here by
the validated schema name, and ``$n`` parameters, which psycopg's raw cursors
pass to PostgreSQL as they are.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from importlib import resources
from pathlib import Path

from pgqrs._validate import validate_schema_name

_MIGRATION_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_FUNCTION_FILE = re.compile(r"([a-z][a-z0-9_]*)\.sql")


@functools.cache
def sql_dir() -> Path:
    """The ``sql`` folder: inside the installed wheel, or the source checkout's."""
    packaged = Path(str(resources.files("pgqrs"))) / "sql"
    if (packaged / "queries").is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if (checkout / "queries").is_dir():
        return checkout
    raise RuntimeError(f"pgqrs's SQL files are missing (looked in {packaged} and {checkout})")


def render(text: str, schema: str) -> str:
    """Substitute the schema placeholders with the (validated) schema name."""
    validate_schema_name(schema)
    return text.replace(':"schema"', f'"{schema}"').replace(":'schema'", f"'{schema}'")


@functools.cache
def _query_texts() -> dict[str, str]:
    folder = sql_dir() / "queries"
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.sql"))}


@functools.cache
def queries(schema: str) -> dict[str, str]:
    """Every named query, rendered for ``schema``; keys are names like 'message_dequeue'."""
    return {name: render(text, schema) for name, text in _query_texts().items()}


@functools.cache
def script(name: str, schema: str) -> str:
    """A multi-statement script from the ``sql`` folder (e.g. 'uninstall')."""
    return render((sql_dir() / f"{name}.sql").read_text(encoding="utf-8"), schema)


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        """sha256 of the file as shipped, before the schema is substituted."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """The migrations in version order; versions must be 1, 2, 3... without gaps."""
    found: list[Migration] = []
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        match = _MIGRATION_FILE.fullmatch(path.name)
        if not match:
            raise RuntimeError(f"migration file {path.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(f"migration versions must be consecutive; missing {expected:04d}")
    return tuple(found)


@dataclasses.dataclass(frozen=True)
class Function:
    """One file of ``sql/functions/``: the current definition of one server function."""

    name: str
    text: str

    @property
    def checksum(self) -> str:
        """sha256 of the file as shipped, before the schema is substituted."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        """How install and verify name it, next to migrations' ``NNNN_name``."""
        return f"function {self.name}"


@functools.cache
def functions() -> tuple[Function, ...]:
    """The server functions, by name; each file must define the function it is named after."""
    found: list[Function] = []
    for path in sorted((sql_dir() / "functions").glob("*.sql")):
        match = _FUNCTION_FILE.fullmatch(path.name)
        if not match:
            raise RuntimeError(f"function file {path.name!r} is not named like a function")
        text = path.read_text(encoding="utf-8")
        if f'CREATE OR REPLACE FUNCTION :"schema".{match[1]}(' not in text:
            raise RuntimeError(
                f"sql/functions/{path.name} must define its function with "
                f'CREATE OR REPLACE FUNCTION :"schema".{match[1]}(...)'
            )
        found.append(Function(match[1], text))
    return tuple(found)
