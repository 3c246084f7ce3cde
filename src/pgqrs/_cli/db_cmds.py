"""``pgqrs db ...``: the embedded local PostgreSQL used when no DSN is given.

These commands always act on the embedded server (its data directory is
``PGQRS_EMBEDDED_DIR`` or the per-user default), whatever --dsn says.
"""

from __future__ import annotations

import click

from pgqrs import _embedded
from pgqrs._cli import exit_codes
from pgqrs._cli.context import Ctx, pass_ctx


@click.group()
def db() -> None:
    """Start, stop and locate the embedded PostgreSQL server."""


@db.command()
@pass_ctx
def start(ctx: Ctx) -> None:
    """Start the embedded server (a no-op when it runs already) and print its DSN."""
    was_running = _embedded.status().running
    dsn = _embedded.ensure_server(announce=False)
    state = _embedded.status()
    ctx.emit(
        {"data_dir": state.data_dir, "dsn": dsn, "pid": state.pid, "already_running": was_running},
        f"embedded PostgreSQL {'was already running' if was_running else 'started'} "
        f"(pid {state.pid}, data {state.data_dir})\n{dsn}",
    )


@db.command()
@pass_ctx
def stop(ctx: Ctx) -> None:
    """Stop the embedded server (connected clients are disconnected)."""
    stopped = _embedded.stop()
    data_dir = _embedded.data_dir()
    ctx.emit(
        {"data_dir": data_dir, "stopped": stopped},
        f"stopped the embedded PostgreSQL ({data_dir})"
        if stopped
        else f"the embedded PostgreSQL was not running ({data_dir})",
    )


@db.command()
@pass_ctx
def status(ctx: Ctx) -> int:
    """Is the embedded server running, and where (exit 5 when it is not running)?"""
    state = _embedded.status()
    if state.running:
        human = f"running (pid {state.pid})\ndata: {state.data_dir}\nlog:  {state.log_file}"
        human += f"\ndsn:  {state.dsn}"
    else:
        created = "initialized" if state.initialized else "not created yet"
        human = f"not running\ndata: {state.data_dir} ({created})\nstart it with `pgqrs db start`"
        human += " (any pgqrs command without a DSN starts it too)"
    ctx.emit(
        {
            "data_dir": state.data_dir,
            "initialized": state.initialized,
            "running": state.running,
            "pid": state.pid,
            "dsn": state.dsn,
            "log_file": state.log_file,
        },
        human,
    )
    return exit_codes.OK if state.running else exit_codes.CONNECTION_FAILED


@db.command()
@pass_ctx
def url(ctx: Ctx) -> None:
    """Print the embedded server's DSN, starting it if needed.

    e.g. export PGQRS_DSN="$(pgqrs db url)"
    """
    dsn = _embedded.ensure_server(announce=False)
    ctx.emit({"dsn": dsn}, dsn)
