"""What every command shares: the global options, the Config, and output.

Commands print through ``Ctx.emit``: a rich rendering for people, or one JSON
document on stdout with ``--json`` (for scripts), never both.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
import psycopg
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pgqrs._cli import exit_codes
from pgqrs._config import Config, mask_dsn
from pgqrs._errors import ConnectionFailed, Error
from pgqrs._sync.admin import Admin

#: Width used for tables when stdout is not a terminal (and COLUMNS is unset),
#: so piped output keeps one row per line instead of rich's 80 columns.
PIPE_WIDTH = 200
#: Longest JSON shown in a table cell before it is cut with "...".
MAX_CELL_JSON = 80


class CliError(Error):
    """A failure the CLI itself detects (invalid JSON, a missing --yes), with its exit code."""

    def __init__(self, message: str, code: int = exit_codes.ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass
class Ctx:
    """The global options, and the Config built from them on first use."""

    dsn: str | None = None
    schema: str | None = None
    as_json: bool = False
    debug: bool = False
    _config: Config | None = None
    _reachable: bool = False
    out: Console = dataclasses.field(default_factory=lambda: _console(stderr=False))
    err: Console = dataclasses.field(default_factory=lambda: _console(stderr=True))

    def config(self, *, schema: str | None = None) -> Config:
        """The Config: --dsn/--schema, then PGQRS_* variables, then the embedded server."""
        if self._config is None or schema is not None:
            options: dict[str, Any] = {}
            if self.dsn:
                options["dsn"] = self.dsn
            if schema or self.schema:
                options["schema"] = schema or self.schema
            config = Config.from_env(**options)
            if not self._reachable:
                check_reachable(config)
                self._reachable = True
            if schema is not None:
                return config
            self._config = config
        return self._config

    def admin(self) -> Admin:
        """An Admin on the configured database; use it in a ``with`` block."""
        return Admin(self.config())

    def emit(self, data: Any, human: Callable[[], None] | str) -> None:
        """Print ``data`` as JSON with --json, else run ``human`` (or print it if a str)."""
        if self.as_json:
            click.echo(json.dumps(data, default=to_jsonable, ensure_ascii=False))
        elif isinstance(human, str):
            self.out.print(Text(printable(human, keep_newlines=True)), highlight=False)
        else:
            human()

    def table(
        self, title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Print a rich table (human output only)."""
        table = Table(title=None if title is None else Text(printable(title)), title_justify="left")
        for column in columns:
            table.add_column(Text(printable(column)), overflow="fold")
        for row in rows:
            # Text, never a str: rich would read "[bold]" in a payload as markup.
            table.add_row(*(Text(printable(cell(value))) for value in row))
        self.out.print(table)

    def note(self, text: str) -> None:
        """A remark for people on stderr (kept out of stdout, which may be parsed)."""
        if not self.as_json:
            self.err.print(Text(printable(text, keep_newlines=True)), highlight=False)


def check_reachable(config: Config) -> None:
    """Connect once, so an unreachable server fails at once with the server's reason.

    A pool retries until its timeout, which is right for a service but makes a
    command line hang for ``connect_timeout`` seconds on a typo.
    """
    try:
        psycopg.connect(config.dsn, **config.connect_kwargs()).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ConnectionFailed(
            f"cannot connect to PostgreSQL at {mask_dsn(config.dsn)}: {reason}"
        ) from exc


def _console(*, stderr: bool) -> Console:
    stream_is_tty = Console(stderr=stderr).is_terminal
    width = None if stream_is_tty or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(stderr=stderr, width=width, soft_wrap=False)


def to_jsonable(value: Any) -> Any:
    """``json.dumps`` default: dataclasses, datetimes, UUIDs, paths, decimals."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Path, decimal.Decimal)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def cell(value: Any) -> str:
    """A table cell: JSON for structured values (cut when long), ISO for times."""
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=to_jsonable)
        return text if len(text) <= MAX_CELL_JSON else text[: MAX_CELL_JSON - 3] + "..."
    return str(value)


#: Characters a terminal may act on instead of showing: C0 controls (ESC starts
#: escape sequences, BEL, backspace, carriage return), DEL, C1 controls (U+009B
#: is a one-character CSI) and the bidirectional overrides that reorder text.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_KEEP_NEWLINES = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character shown as an escape (ESC as ``\\x1b``).

    Payloads, dedup keys, queue names, hostnames and error messages are data
    from others: printed raw, an ESC or OSC sequence would retitle the window,
    clear the screen or plant a link. Rich markup is a separate concern: print
    the result as a ``rich.text.Text`` (or with ``markup=False``).
    """
    pattern = _UNPRINTABLE_KEEP_NEWLINES if keep_newlines else _UNPRINTABLE
    return pattern.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def get(ctx: click.Context) -> Ctx:
    """The Ctx of the running command."""
    obj = ctx.find_object(Ctx)
    if obj is None:  # a command invoked outside the pgqrs group (tests, embedding)
        obj = ctx.ensure_object(Ctx)
    return obj


pass_ctx = click.make_pass_decorator(Ctx, ensure=True)


def confirm(ctx: Ctx, yes: bool, question: str) -> None:
    """Ask before a destructive operation; without a terminal, demand --yes."""
    if yes:
        return
    if not sys.stdin or not sys.stdin.isatty():
        raise CliError(f"{question} Refusing without --yes (no terminal to ask).", exit_codes.USAGE)
    if not click.confirm(question, default=False, err=True):
        raise CliError("aborted", exit_codes.ERROR)


def parse_duration(text: str, what: str) -> float:
    """Seconds from ``90``, ``1.5``, ``30s``, ``15m``, ``12h``, ``7d`` or ``2w``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    raw = text.strip().lower()
    factor = 1
    if raw and raw[-1] in units:
        factor = units[raw[-1]]
        raw = raw[:-1]
    try:
        value = float(raw) * factor
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise CliError(
            f"invalid {what} {text!r}: give seconds, or a number with s, m, h, d or w (e.g. 7d)",
            exit_codes.USAGE,
        )
    return value


def duration_option(ctx: click.Context, param: click.Parameter, value: Any) -> float | None:
    """Click callback: a ``parse_duration`` value (a bad one is a usage error)."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    try:
        return parse_duration(str(value), f"--{param.name}".replace("_", "-"))
    except CliError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def json_option(ctx: click.Context, param: click.Parameter, value: Any) -> str | None:
    """Click callback: a JSON document, kept as text after checking that it parses.

    Kept as text because a ``str`` payload is sent as JSON as it is.
    """
    if value is None:
        return None
    text = str(value)
    check_json(text, "argument" if isinstance(param, click.Argument) else f"--{param.name}")
    return text


def check_json(text: str, where: str) -> None:
    """Raise a usage CliError naming ``where`` unless ``text`` is one JSON document."""
    try:
        json.loads(text)
    except RecursionError:
        raise CliError(
            f"invalid JSON in {where}: nested too deeply to decode (keep payloads shallow: "
            "nest objects and arrays a few dozen levels at most)",
            exit_codes.USAGE,
        ) from None
    except ValueError as exc:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise CliError(
            f"invalid JSON in {where}: {exc} in {shown!r} "
            """(quote the whole document for the shell, e.g. '{"task": "x"}')""",
            exit_codes.USAGE,
        ) from None
