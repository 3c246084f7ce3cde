"""``pgqrs queue ...``: create, list, delete, purge, pause, resume, stats."""

from __future__ import annotations

import click

from pgqrs._cli.context import Ctx, confirm, duration_option, parse_duration, pass_ctx
from pgqrs._config import DEFAULT_MAX_ATTEMPTS, DEFAULT_VISIBILITY_TIMEOUT
from pgqrs._models import QueueStats


@click.group()
def queue() -> None:
    """Create, inspect and manage queues."""


@queue.command()
@click.argument("name")
@click.option(
    "--visibility-timeout",
    type=str,
    callback=duration_option,
    default=DEFAULT_VISIBILITY_TIMEOUT,
    show_default=True,
    help="Lease length of a dequeued message (seconds, or 30s/5m/1h).",
)
@click.option(
    "--max-attempts",
    type=int,
    default=DEFAULT_MAX_ATTEMPTS,
    show_default=True,
    help="Deliveries before an unfinished message is archived as dead.",
)
@click.option("--exist-ok", is_flag=True, help="Succeed (and show it) if the queue exists already.")
@click.option(
    "--archive-retention",
    type=str,
    callback=duration_option,
    help="Workers delete archived messages older than this (e.g. 7d); default: keep.",
)
@pass_ctx
def create(
    ctx: Ctx,
    name: str,
    visibility_timeout: float,
    max_attempts: int,
    exist_ok: bool,
    archive_retention: float | None,
) -> None:
    """Create queue NAME."""
    with ctx.admin() as admin:
        info = admin.create_queue(
            name,
            visibility_timeout=visibility_timeout,
            max_attempts=max_attempts,
            exist_ok=exist_ok,
            archive_retention=archive_retention,
        )
    ctx.emit(
        info,
        f"queue {info.name!r} ready (visibility timeout {info.visibility_timeout:g}s, "
        f"max attempts {info.max_attempts})",
    )


@queue.command()
@click.argument("name")
@click.argument("duration", metavar="DURATION|none")
@pass_ctx
def retention(ctx: Ctx, name: str, duration: str) -> None:
    """Keep queue NAME's archived messages for DURATION (e.g. 7d); `none` keeps
    them for ever. Running workers delete older ones in small batches."""
    keep = None if duration.lower() == "none" else parse_duration(duration, "DURATION")
    with ctx.admin() as admin:
        admin.set_archive_retention(name, keep)
    ctx.emit(
        {"queue": name, "archive_retention": keep},
        f"queue {name!r}: archived messages kept "
        + ("for ever" if keep is None else f"for {keep:g}s"),
    )


@queue.command("list")
@pass_ctx
def list_(ctx: Ctx) -> None:
    """List every queue."""
    with ctx.admin() as admin:
        queues = admin.list_queues()
    ctx.emit(
        queues,
        lambda: (
            ctx.table(
                None,
                ["name", "visibility timeout (s)", "max attempts", "paused", "created at"],
                [
                    [q.name, q.visibility_timeout, q.max_attempts, q.paused, q.created_at]
                    for q in queues
                ],
            )
            if queues
            else ctx.note("no queues (create one with `pgqrs queue create NAME`)")
        ),
    )


@queue.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def delete(ctx: Ctx, name: str, yes: bool) -> None:
    """Delete queue NAME with its waiting and in-flight messages (its archive stays)."""
    confirm(ctx, yes, f"Delete queue {name!r} and every message waiting on it?")
    with ctx.admin() as admin:
        admin.delete_queue(name)
    ctx.emit({"queue": name, "deleted": True}, f"deleted queue {name!r}")


@queue.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def purge(ctx: Ctx, name: str, yes: bool) -> None:
    """Delete every waiting, delayed and in-flight message of queue NAME."""
    confirm(ctx, yes, f"Delete every message of queue {name!r}?")
    with ctx.admin() as admin:
        count = admin.purge_queue(name)
    ctx.emit({"queue": name, "purged": count}, f"purged {count} message(s) from {name!r}")


@queue.command()
@click.argument("name")
@pass_ctx
def pause(ctx: Ctx, name: str) -> None:
    """Stop deliveries from queue NAME (enqueueing still works)."""
    with ctx.admin() as admin:
        admin.pause_queue(name)
    ctx.emit({"queue": name, "paused": True}, f"paused {name!r}")


@queue.command()
@click.argument("name")
@pass_ctx
def resume(ctx: Ctx, name: str) -> None:
    """Resume deliveries from queue NAME."""
    with ctx.admin() as admin:
        admin.resume_queue(name)
    ctx.emit({"queue": name, "paused": False}, f"resumed {name!r}")


@queue.command()
@click.argument("name", required=False)
@pass_ctx
def stats(ctx: Ctx, name: str | None) -> None:
    """Counts by state for queue NAME (every queue when NAME is omitted)."""
    with ctx.admin() as admin:
        names = [name] if name else [q.name for q in admin.list_queues()]
        result = [admin.queue_stats(n) for n in names]
    ctx.emit(result[0] if name else result, lambda: _show_stats(ctx, result))


def _show_stats(ctx: Ctx, result: list[QueueStats]) -> None:
    if not result:
        ctx.note("no queues")
        return
    ctx.table(
        None,
        ["queue", "paused", "ready", "in flight", "delayed", "archived", "oldest ready (s)"],
        [
            [
                s.queue,
                s.paused,
                s.ready,
                s.in_flight,
                s.delayed,
                ", ".join(f"{k}={v}" for k, v in sorted(s.archived.items())) or "0",
                None if s.oldest_ready_age is None else round(s.oldest_ready_age, 1),
            ]
            for s in result
        ],
    )
    slow = [s for s in result if s.oldest_xmin_age is not None and s.oldest_xmin_age > 60]
    for s in slow[:1]:
        ctx.note(
            f"note: backend {s.oldest_xmin_pid} has held a snapshot for {s.oldest_xmin_age:.0f}s, "
            "holding back vacuum of finished messages"
        )
