"""``pgqrs install``, ``uninstall`` and ``verify``: the schema's lifecycle."""

from __future__ import annotations

import click

from pgqrs._cli import exit_codes
from pgqrs._cli.context import Ctx, confirm, pass_ctx


@click.command()
@pass_ctx
def install(ctx: Ctx) -> None:
    """Create the pgqrs schema, or apply the migrations and functions it lacks (idempotent)."""
    with ctx.admin() as admin:
        applied = admin.install()
    schema = ctx.config().schema
    ctx.emit(
        {"schema": schema, "applied": applied},
        f"installed schema {schema!r}: applied {', '.join(applied)}"
        if applied
        else f"schema {schema!r} is already up to date",
    )


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def uninstall(ctx: Ctx, yes: bool) -> None:
    """Drop pgqrs's own tables and functions, with all queues, messages and archive rows.

    Only when pgqrs is installed in the schema; other objects there are kept.
    """
    schema = ctx.config().schema
    confirm(ctx, yes, f"Drop schema {schema!r} with every queue, message and archived message?")
    with ctx.admin() as admin:
        dropped = admin.uninstall()
    ctx.emit(
        {"schema": schema, "uninstalled": dropped},
        f"uninstalled schema {schema!r}"
        if dropped
        else f"pgqrs is not installed in schema {schema!r}: nothing was dropped",
    )


@click.command()
@pass_ctx
def verify(ctx: Ctx) -> int:
    """Check that the schema is installed, complete and unmodified (exit 4 if not)."""
    with ctx.admin() as admin:
        report = admin.verify()
    data = {"ok": report.ok, "description": report.describe(), "report": report}
    ctx.emit(data, report.describe())
    return exit_codes.OK if report.ok else exit_codes.SCHEMA_NOT_INSTALLED
