"""``pgqrs archive ...``: list, purge and redrive archived messages."""

from __future__ import annotations

import click

from pgqrs._cli.context import Ctx, duration_option, pass_ctx
from pgqrs._ops import MAX_BATCH
from pgqrs._validate import ArchiveStatus, validate_status

#: Archived messages shown by ``archive list`` unless --limit says otherwise.
DEFAULT_ARCHIVE_LIST_LIMIT = 20


@click.group()
def archive() -> None:
    """Inspect and maintain archived (finished or dead) messages."""


@archive.command("list")
@click.option("--queue", "-q", help="Only this queue's messages.")
@click.option("--status", "-s", help="Only this status (completed, failed, dead, cancelled).")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_BATCH),
    default=DEFAULT_ARCHIVE_LIST_LIMIT,
    show_default=True,
)
@pass_ctx
def list_(ctx: Ctx, queue: str | None, status: str | None, limit: int) -> None:
    """Archived messages, newest first."""
    with ctx.admin() as admin:
        rows = admin.list_archive(queue, status=_status(status), limit=limit)
    ctx.emit(
        rows,
        lambda: (
            ctx.table(
                None,
                ["id", "queue", "status", "attempts", "archived at", "payload", "result / error"],
                [
                    [
                        r.id,
                        r.queue,
                        r.status,
                        r.attempts,
                        r.archived_at,
                        r.payload,
                        r.error if r.error is not None else r.result,
                    ]
                    for r in rows
                ],
            )
            if rows
            else ctx.note("no archived messages")
        ),
    )


@archive.command()
@click.option(
    "--older-than",
    required=True,
    type=str,
    callback=duration_option,
    help="Only messages archived longer ago than this (e.g. 7d, 12h, 3600).",
)
@click.option("--queue", "-q", help="Only this queue's messages.")
@click.option("--status", "-s", help="Only this status.")
@pass_ctx
def purge(ctx: Ctx, older_than: float, queue: str | None, status: str | None) -> None:
    """Delete archived messages older than --older-than."""
    with ctx.admin() as admin:
        count = admin.purge_archive(older_than=older_than, queue=queue, status=_status(status))
    ctx.emit({"purged": count}, f"purged {count} archived message(s)")


@archive.command()
@click.argument("queue")
@click.option("--status", "-s", default="dead", show_default=True, help="Which archived messages.")
@click.option("--id", "ids", type=int, multiple=True, help="Only these message ids (repeatable).")
@pass_ctx
def redrive(ctx: Ctx, queue: str, status: str, ids: tuple[int, ...]) -> None:
    """Put archived messages of QUEUE (by default the dead ones) back on it."""
    with ctx.admin() as admin:
        moved = admin.redrive(queue, status=validate_status(status), ids=list(ids) or None)
    ctx.emit(
        {"queue": queue, "redriven": moved},
        f"redrove {len(moved)} message(s) onto {queue!r}" + (f": {moved}" if moved else ""),
    )


def _status(status: str | None) -> ArchiveStatus | None:
    """The --status option checked (the type checker then knows it is one)."""
    return None if status is None else validate_status(status)
