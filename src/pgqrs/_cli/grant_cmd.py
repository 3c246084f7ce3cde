"""``pgqrs grant ROLE``: least-privilege roles for producers, consumers, admins and monitors."""

from __future__ import annotations

import click

from pgqrs._cli.context import Ctx, pass_ctx


@click.command()
@click.argument("role")
@click.option("--producer", is_flag=True, help="May enqueue (only).")
@click.option("--consumer", is_flag=True, help="May dequeue and settle messages and run workers.")
@click.option("--admin", "as_admin", is_flag=True, help="May manage queues, archive and workers.")
@click.option(
    "--read-only",
    "--monitor",
    "read_only",
    is_flag=True,
    help="May list queues, stats, workers and the archive, and peek (dashboards, metrics).",
)
@pass_ctx
def grant(
    ctx: Ctx, role: str, producer: bool, consumer: bool, as_admin: bool, read_only: bool
) -> None:
    """Give the existing ROLE what its job needs on the schema, and no more.

    The role gets EXECUTE on pgqrs's server functions for its job, never
    privileges on the tables. Installing and migrating stay with the schema's
    owner (Admin.grant in Python).
    """
    with ctx.admin() as admin:
        statements = admin.grant(
            role, producer=producer, consumer=consumer, admin=as_admin, read_only=read_only
        )
    ctx.emit({"role": role, "statements": statements}, "\n".join(statements))
