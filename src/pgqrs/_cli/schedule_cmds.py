"""``pgqrs schedule ...``: add, list, rm, pause, resume (docs/schedules.md)."""

from __future__ import annotations

from typing import Any

import click

from pgqrs._cli.context import Ctx, confirm, duration_option, json_option, pass_ctx
from pgqrs._cli.message_cmds import _headers


@click.group()
def schedule() -> None:
    """Recurring enqueues: cron or fixed-interval schedules, fired by running workers."""


@schedule.command()
@click.argument("name")
@click.option("--queue", required=True, help="The queue each slot's message goes to.")
@click.option(
    "--payload", required=True, callback=json_option, help="The message's payload (JSON)."
)
@click.option(
    "--cron",
    help="5 fields (minute hour day-of-month month day-of-week) or "
    "@hourly/@daily/@weekly/@monthly/@yearly.",
)
@click.option(
    "--interval",
    type=str,
    callback=duration_option,
    help="Instead of --cron: every N seconds (or 30s/5m/1h), whole seconds.",
)
@click.option(
    "--time-zone", default="UTC", show_default=True, help="IANA time zone of --cron's wall times."
)
@click.option(
    "--missed",
    type=click.Choice(["skip", "latest"]),
    default="skip",
    show_default=True,
    help="Slots missed while no worker ran: skip them, or enqueue the latest once.",
)
@click.option("--headers", callback=json_option, help="A JSON object stored with each message.")
@click.option("--priority", type=int, default=0, show_default=True, help="The messages' priority.")
@pass_ctx
def add(
    ctx: Ctx,
    name: str,
    queue: str,
    payload: str,
    cron: str | None,
    interval: float | None,
    time_zone: str,
    missed: str,
    headers: str | None,
    priority: int,
) -> None:
    """Create schedule NAME (workers that run schedules fire it)."""
    with ctx.admin() as admin:
        info = admin.create_schedule(
            name,
            queue=queue,
            payload=payload,
            cron=cron,
            interval=interval,
            time_zone=time_zone,
            missed=missed,
            headers=_headers(headers),
            priority=priority,
        )
    when = f"cron {info.cron!r} ({info.time_zone})" if info.cron else f"every {info.interval}s"
    ctx.emit(info, f"schedule {info.name!r} created: {when} -> queue {info.queue!r}")


@schedule.command("list")
@pass_ctx
def list_(ctx: Ctx) -> None:
    """List every schedule with its next and last slot."""
    with ctx.admin() as admin:
        schedules = admin.list_schedules()
    rows: list[list[Any]] = [
        [
            s.name,
            s.queue,
            s.cron if s.cron is not None else f"every {s.interval}s",
            s.time_zone,
            s.missed,
            s.paused,
            s.next_slot,
            s.last_slot,
        ]
        for s in schedules
    ]
    ctx.emit(
        schedules,
        lambda: (
            ctx.table(
                None,
                [
                    "name",
                    "queue",
                    "when",
                    "time zone",
                    "missed",
                    "paused",
                    "next slot",
                    "last slot",
                ],
                rows,
            )
            if schedules
            else ctx.note("no schedules (add one with `pgqrs schedule add NAME ...`)")
        ),
    )


@schedule.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def rm(ctx: Ctx, name: str, yes: bool) -> None:
    """Delete schedule NAME (the messages it enqueued stay)."""
    confirm(ctx, yes, f"Delete schedule {name!r}?")
    with ctx.admin() as admin:
        admin.delete_schedule(name)
    ctx.emit({"schedule": name, "deleted": True}, f"deleted schedule {name!r}")


@schedule.command()
@click.argument("name")
@pass_ctx
def pause(ctx: Ctx, name: str) -> None:
    """Stop firing schedule NAME."""
    with ctx.admin() as admin:
        admin.pause_schedule(name)
    ctx.emit({"schedule": name, "paused": True}, f"paused schedule {name!r}")


@schedule.command()
@click.argument("name")
@pass_ctx
def resume(ctx: Ctx, name: str) -> None:
    """Fire schedule NAME again, from its first slot after now."""
    with ctx.admin() as admin:
        admin.resume_schedule(name)
    ctx.emit({"schedule": name, "paused": False}, f"resumed schedule {name!r}")
