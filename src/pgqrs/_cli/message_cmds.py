"""``pgqrs enqueue``, ``peek`` and ``dequeue``: messages from the shell."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pgqrs._cli import exit_codes
from pgqrs._cli.context import CliError, Ctx, check_json, duration_option, json_option, pass_ctx
from pgqrs._errors import Error
from pgqrs._models import Message
from pgqrs._ops import MAX_BATCH
from pgqrs._sync.consumer import Consumer
from pgqrs._sync.producer import Producer

#: Messages per INSERT statement when enqueueing a file.
DEFAULT_ENQUEUE_BATCH = 500
#: Messages shown by ``peek`` unless --limit says otherwise.
DEFAULT_PEEK_LIMIT = 20


@click.command()
@click.argument("queue")
@click.argument("payload", required=False, callback=json_option, metavar="[JSON]")
@click.option(
    "--file",
    "-f",
    "path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Enqueue one message per line of this JSON Lines file ('-' for stdin).",
)
@click.option(
    "--delay",
    type=str,
    callback=duration_option,
    help="Keep the message(s) invisible this long (e.g. 30s, 5m).",
)
@click.option(
    "--priority", type=int, default=0, show_default=True, help="Higher is delivered first."
)
@click.option(
    "--dedup-key", help="Skip the enqueue if a waiting message has this key (single JSON only)."
)
@click.option("--headers", callback=json_option, help="A JSON object stored with every message.")
@click.option("--group", help="The message group of every message (flow control).")
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH),
    default=DEFAULT_ENQUEUE_BATCH,
    show_default=True,
    help="Messages per statement with --file.",
)
@pass_ctx
def enqueue(
    ctx: Ctx,
    queue: str,
    payload: str | None,
    path: str | None,
    delay: float | None,
    priority: int,
    dedup_key: str | None,
    headers: str | None,
    group: str | None,
    batch_size: int,
) -> None:
    """Enqueue the JSON document JSON on QUEUE, or every line of --file.

    \b
    Examples:
      pgqrs enqueue tasks '{"task": "send_email", "to": "user@example.com"}'
      pgqrs enqueue tasks --file jobs.jsonl
    """
    if (payload is None) == (path is None):
        raise click.UsageError("give either a JSON argument or --file, not both or neither")
    if dedup_key is not None and path is not None:
        raise click.UsageError("--dedup-key applies to a single message, not to --file")
    header_map = _headers(headers)
    options: dict[str, Any] = {
        "delay": delay,
        "priority": priority,
        "headers": header_map,
        "group": group,
    }
    config = ctx.config()
    if payload is not None:
        with Producer(config, queue) as producer:
            msg = producer.enqueue(payload, dedup_key=dedup_key, **options)
        ctx.emit(
            {"queue": queue, "id": msg.id, "inserted": msg.inserted},
            f"enqueued message {msg.id} on {queue!r}"
            if msg.inserted
            else f"message {msg.id} with dedup key {dedup_key!r} is already waiting on {queue!r}",
        )
        return
    assert path is not None
    lines = _load_lines(path)
    ids: list[int] = []
    with Producer(config, queue) as producer, _progress(ctx) as progress:
        task = progress.add_task(f"enqueue {queue}", total=len(lines))
        for start in range(0, len(lines), batch_size):
            chunk = lines[start : start + batch_size]
            try:
                messages = producer.enqueue_batch(chunk, **options)
            except Error as exc:
                raise CliError(
                    f"{exc} (after enqueuing {len(ids)} of {len(lines)} messages from {path})",
                    exit_codes.for_error(exc),
                ) from exc
            ids.extend(m.id for m in messages)
            progress.advance(task, len(chunk))
    ctx.emit(
        {"queue": queue, "count": len(ids), "ids": ids},
        f"enqueued {len(ids)} message(s) on {queue!r}"
        + (f" (ids {ids[0]}..{ids[-1]})" if ids else ""),
    )


def _headers(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise CliError(f"--headers must be a JSON object, got {text!r}", exit_codes.USAGE)
    return value


def _load_lines(path: str) -> list[str]:
    """Every non-blank line of a JSON Lines file, each checked to be JSON.

    All are checked before any is sent, so a bad line enqueues nothing.
    """
    try:
        if path == "-":
            text_lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as handle:
                text_lines = handle.read().splitlines()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}", exit_codes.USAGE) from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path} is not UTF-8 text: {exc}", exit_codes.USAGE) from None
    lines = []
    for number, line in _numbered(text_lines):
        check_json(line, f"{path} line {number}")
        lines.append(line)
    if not lines:
        raise CliError(f"{path} has no JSON lines to enqueue", exit_codes.USAGE)
    return lines


def _numbered(lines: list[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, line


def _progress(ctx: Ctx) -> Progress:
    """A progress bar on stderr, shown only to a person at a terminal."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=ctx.err,
        disable=ctx.as_json or not ctx.err.is_terminal,
    )


@click.command()
@click.argument("queue")
@click.option(
    "--limit", type=click.IntRange(1, MAX_BATCH), default=DEFAULT_PEEK_LIMIT, show_default=True
)
@pass_ctx
def peek(ctx: Ctx, queue: str, limit: int) -> None:
    """Show QUEUE's messages in delivery order, without leasing them."""
    with ctx.admin() as admin:
        admin.get_queue(queue)
        rows = admin.peek(queue, limit)
    ctx.emit(
        [{"state": state, **_message_dict(m)} for m, state in rows],
        lambda: (
            ctx.table(
                None,
                [
                    "id",
                    "state",
                    "priority",
                    "attempts",
                    "enqueued at",
                    "visible at",
                    "payload",
                    "progress",
                ],
                [
                    [
                        m.id,
                        s,
                        m.priority,
                        m.attempts,
                        m.enqueued_at,
                        m.visible_until,
                        m.payload,
                        m.progress,
                    ]
                    for m, s in rows
                ],
            )
            if rows
            else ctx.note(f"queue {queue!r} is empty")
        ),
    )


@click.command()
@click.argument("ids", nargs=-1, required=True, type=click.IntRange(1), metavar="ID...")
@pass_ctx
def cancel(ctx: Ctx, ids: tuple[int, ...]) -> None:
    """Cancel messages by id: a waiting or delayed one is archived as cancelled
    at once; a running one is marked, and its worker stops the handler and
    archives it as cancelled. An already archived or unknown id is reported and
    makes the exit code non-zero (1 archived, 3 not found)."""
    with ctx.admin() as admin:
        outcomes = admin.cancel_batch(list(ids))
    ordered = [(i, outcomes[i]) for i in dict.fromkeys(ids)]
    ctx.emit(
        [{"id": i, "outcome": o} for i, o in ordered],
        lambda: ctx.table(None, ["id", "outcome"], [[i, o] for i, o in ordered]),
    )
    if any(o == "not_found" for _, o in ordered):
        raise SystemExit(exit_codes.NOT_FOUND)
    if any(o.startswith("archived:") for _, o in ordered):
        raise SystemExit(exit_codes.ERROR)


@click.command()
@click.argument("id", type=click.IntRange(1))
@click.option(
    "--timeout",
    type=str,
    callback=duration_option,
    help="Give up after this long (exit code 7); default: wait for ever.",
)
@pass_ctx
def wait(ctx: Ctx, id: int, timeout: float | None) -> None:
    """Wait until message ID is archived; show its status, result or error."""
    with ctx.admin() as admin:
        done = admin.wait(id, timeout=timeout)
    ctx.emit(
        done,
        lambda: ctx.table(
            None,
            ["id", "queue", "status", "attempts", "archived at", "result / error", "progress"],
            [
                [
                    done.id,
                    done.queue,
                    done.status,
                    done.attempts,
                    done.archived_at,
                    done.result if done.error is None else done.error,
                    done.progress,
                ]
            ],
        ),
    )


@click.command()
@click.argument("queue")
@click.option(
    "--batch",
    type=click.IntRange(1, MAX_BATCH),
    default=1,
    show_default=True,
    help="Lease up to this many messages.",
)
@click.option(
    "--visibility-timeout",
    type=str,
    callback=duration_option,
    help="Lease length (default: the queue's).",
)
@click.option(
    "--archive", "settle", flag_value="archive", help="Archive them as completed at once."
)
@click.option("--delete", "settle", flag_value="delete", help="Delete them at once.")
@pass_ctx
def dequeue(
    ctx: Ctx, queue: str, batch: int, visibility_timeout: float | None, settle: str | None
) -> None:
    """Lease messages from QUEUE and show them (for debugging).

    Without --archive or --delete they are delivered again once the lease expires.
    """
    with Consumer(ctx.config(), queue) as consumer:
        messages = consumer.dequeue(batch=batch, visibility_timeout=visibility_timeout)
        if messages and settle == "archive":
            consumer.archive_batch(messages, "completed")
        elif messages and settle == "delete":
            consumer.delete_batch(messages)
    ctx.emit(
        {"queue": queue, "settled": settle, "messages": [_message_dict(m) for m in messages]},
        lambda: _show_dequeued(ctx, queue, messages, settle),
    )


def _show_dequeued(ctx: Ctx, queue: str, messages: list[Message], settle: str | None) -> None:
    if not messages:
        ctx.note(f"no message ready on {queue!r}")
        return
    ctx.table(
        None,
        ["id", "attempts", "lease", "visible until", "payload"],
        [[m.id, m.attempts, m.lease, m.visible_until, m.payload] for m in messages],
    )
    if settle == "archive":
        ctx.note(f"archived {len(messages)} message(s) as completed")
    elif settle == "delete":
        ctx.note(f"deleted {len(messages)} message(s)")
    else:
        ctx.note(
            "leased: delivered again after 'visible until' (use --archive or --delete to settle)"
        )


def _message_dict(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "queue": m.queue,
        "payload": m.payload,
        "priority": m.priority,
        "attempts": m.attempts,
        "enqueued_at": m.enqueued_at,
        "dequeued_at": m.dequeued_at,
        "visible_until": m.visible_until,
        "headers": m.headers,
        "lease": m.lease,
        "dedup_key": m.dedup_key,
        "last_error": m.last_error,
        "group": m.group,
        "progress": m.progress,
    }
