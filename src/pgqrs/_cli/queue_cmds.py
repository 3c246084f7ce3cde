"""``pgqrs queue ...``: create, update, list, delete, purge, pause, resume, stats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from pgqrs._cli.context import Ctx, confirm, duration_option, parse_duration, pass_ctx
from pgqrs._config import DEFAULT_MAX_ATTEMPTS, DEFAULT_VISIBILITY_TIMEOUT
from pgqrs._errors import InvalidArgument
from pgqrs._models import QueueInfo, QueueStats, RateLimit
from pgqrs._ops import UNSET

F = TypeVar("F", bound=Callable[..., Any])


def _limit(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Click callback: an int >= 1, ``none`` (remove), or absent (UNSET)."""
    if value is None:
        return UNSET
    if value.strip().lower() == "none":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise click.BadParameter(f"must be an integer >= 1 or 'none', got {value!r}", ctx, param)
    return n


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Click callback: a rate such as 100/s, ``none`` (remove), or absent (UNSET)."""
    if value is None:
        return UNSET
    if value.strip().lower() == "none":
        return None
    try:
        return RateLimit.parse(value)
    except InvalidArgument as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _limit_options(f: F) -> F:
    """The flow-control options of ``queue create`` and ``queue update``."""
    f = click.option(
        "--rate-per-group",
        is_flag=True,
        help="Keep the rate limit per message group instead of for the whole queue.",
    )(f)
    f = click.option(
        "--rate-limit",
        callback=_rate,
        help="Dequeues per period across every worker: 100/s, 600/m, 5000/h ('none' removes).",
    )(f)
    f = click.option(
        "--group-concurrency",
        callback=_limit,
        help="Messages of one group leased at once at most; 1: in order ('none' removes).",
    )(f)
    f = click.option(
        "--concurrency-limit",
        callback=_limit,
        help="Messages of the queue leased at once at most, across workers ('none' removes).",
    )(f)
    return f


def _with_per_group(rate: Any, per_group: bool) -> Any:
    if per_group and not isinstance(rate, RateLimit):
        raise click.UsageError("--rate-per-group needs --rate-limit")
    if isinstance(rate, RateLimit) and per_group:
        return RateLimit(rate.count, rate.period, per_group=True)
    return rate


def limits_text(q: QueueInfo | QueueStats) -> str:
    """The queue's flow-control limits in a few words ("-" for none)."""
    parts = []
    if q.concurrency_limit is not None:
        parts.append(f"concurrency {q.concurrency_limit}")
    if q.group_concurrency is not None:
        parts.append(f"per group {q.group_concurrency}")
    if q.rate_limit is not None:
        parts.append(f"rate {q.rate_limit}")
    return ", ".join(parts) or "-"


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
@_limit_options
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
    concurrency_limit: Any,
    group_concurrency: Any,
    rate_limit: Any,
    rate_per_group: bool,
    archive_retention: float | None,
) -> None:
    """Create queue NAME."""
    rate = _with_per_group(rate_limit, rate_per_group)
    with ctx.admin() as admin:
        info = admin.create_queue(
            name,
            visibility_timeout=visibility_timeout,
            max_attempts=max_attempts,
            exist_ok=exist_ok,
            concurrency_limit=None if concurrency_limit is UNSET else concurrency_limit,
            group_concurrency=None if group_concurrency is UNSET else group_concurrency,
            rate_limit=None if rate is UNSET else rate,
            archive_retention=archive_retention,
        )
    limits = limits_text(info)
    ctx.emit(
        info,
        f"queue {info.name!r} ready (visibility timeout {info.visibility_timeout:g}s, "
        f"max attempts {info.max_attempts}"
        + ("" if limits == "-" else f"; limits: {limits}")
        + ")",
    )


@queue.command()
@click.argument("name")
@_limit_options
@pass_ctx
def update(
    ctx: Ctx,
    name: str,
    concurrency_limit: Any,
    group_concurrency: Any,
    rate_limit: Any,
    rate_per_group: bool,
) -> None:
    """Change the flow-control limits of queue NAME (only the options given).

    Takes effect at the next dequeue of every worker.
    """
    rate = _with_per_group(rate_limit, rate_per_group)
    if concurrency_limit is UNSET and group_concurrency is UNSET and rate is UNSET:
        raise click.UsageError(
            "nothing to change: give --concurrency-limit, --group-concurrency or --rate-limit"
        )
    with ctx.admin() as admin:
        info = admin.update_queue(
            name,
            concurrency_limit=concurrency_limit,
            group_concurrency=group_concurrency,
            rate_limit=rate,
        )
    ctx.emit(info, f"queue {info.name!r} limits: {limits_text(info)}")


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
                [
                    "name",
                    "visibility timeout (s)",
                    "max attempts",
                    "paused",
                    "limits",
                    "created at",
                ],
                [
                    [
                        q.name,
                        q.visibility_timeout,
                        q.max_attempts,
                        q.paused,
                        limits_text(q),
                        q.created_at,
                    ]
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
        [
            "queue",
            "paused",
            "ready",
            "in flight",
            "delayed",
            "archived",
            "oldest ready (s)",
            "limits",
        ],
        [
            [
                s.queue,
                s.paused,
                s.ready,
                s.in_flight,
                s.delayed,
                ", ".join(f"{k}={v}" for k, v in sorted(s.archived.items())) or "0",
                None if s.oldest_ready_age is None else round(s.oldest_ready_age, 1),
                limits_text(s),
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
