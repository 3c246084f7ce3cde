"""``pgqrs demo``: the README's Quick Example, run end to end with each step shown.

It runs on the embedded server unless a DSN is given, in a schema of its own
(``pgqrs_demo`` unless --schema says otherwise) so it never touches real queues
and can be run again and again.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.text import Text

from pgqrs._cli.context import CliError, Ctx, pass_ctx, printable
from pgqrs._config import mask_dsn
from pgqrs._sync.admin import Admin
from pgqrs._sync.consumer import Consumer
from pgqrs._sync.producer import Producer

#: Schema the demo uses unless the global --schema names another.
DEMO_SCHEMA = "pgqrs_demo"
#: The queue and the job of the seed's Quick Example.
DEMO_QUEUE = "tasks"
DEMO_JOB = {"task": "send_email", "to": "user@example.com"}


@click.command()
@pass_ctx
def demo(ctx: Ctx) -> None:
    """Run the Quick Example: install, create a queue, enqueue, dequeue, archive."""
    steps: list[dict[str, Any]] = []

    def step(name: str, text: str, **data: Any) -> None:
        steps.append({"step": name, "text": text, **data})
        if not ctx.as_json:
            ctx.out.print(
                Text.assemble((f"{len(steps)}.", "bold cyan"), " ", printable(text)),
                highlight=False,
            )

    config = ctx.config(schema=ctx.schema or DEMO_SCHEMA)
    step(
        "connect",
        f"Connect to PostgreSQL: {mask_dsn(config.dsn)} (schema {config.schema!r})",
        dsn=mask_dsn(config.dsn),
        schema=config.schema,
    )

    with Admin(config) as admin:
        applied = admin.install()
        step(
            "install",
            "Set up pgqrs: admin.install() "
            + (f"applied {', '.join(applied)}" if applied else "(already installed)"),
            applied=applied,
        )
        admin.create_queue(DEMO_QUEUE, exist_ok=True)
        leftovers = admin.purge_queue(DEMO_QUEUE)  # the demo's own queue, from an earlier run
        step(
            "create_queue",
            f"admin.create_queue({DEMO_QUEUE!r})"
            + (
                f" (cleared {leftovers} leftover message(s) of an earlier demo)"
                if leftovers
                else ""
            ),
            queue=DEMO_QUEUE,
        )

        with Producer(config, DEMO_QUEUE) as producer:
            message = producer.enqueue(json.dumps(DEMO_JOB))
        step("enqueue", f"Enqueued message: {message.id}", id=message.id, payload=DEMO_JOB)

        with Consumer(config, DEMO_QUEUE) as consumer:
            msg = consumer.dequeue()
            if msg is None or msg.id != message.id:
                raise CliError(f"demo: expected to dequeue message {message.id}, got {msg!r}")
            step(
                "dequeue",
                f"Processing: {msg.payload}",
                id=msg.id,
                payload=msg.payload,
                attempts=msg.attempts,
            )
            consumer.archive(msg.id, "completed")
        step("archive", f"consumer.archive({msg.id}, 'completed'): moved to the archive", id=msg.id)

        stats = admin.queue_stats(DEMO_QUEUE)
        archived = admin.list_archive(DEMO_QUEUE, limit=1)
        if stats.ready or stats.in_flight or not archived or archived[0].id != msg.id:
            raise CliError(f"demo: message {msg.id} is not in the archive as expected: {stats}")
        step(
            "verify",
            f"Queue {DEMO_QUEUE!r}: {stats.ready} ready, {stats.in_flight} in flight; "
            f"archive has message {msg.id} as {archived[0].status!r}",
            ready=stats.ready,
            in_flight=stats.in_flight,
            archived_status=archived[0].status,
        )

    ctx.emit(
        {"ok": True, "steps": steps},
        lambda: ctx.out.print(
            f"Done. Look around: pgqrs --schema {config.schema} queue stats; "
            f"pgqrs --schema {config.schema} archive list",
            highlight=False,
            markup=False,
        ),
    )
