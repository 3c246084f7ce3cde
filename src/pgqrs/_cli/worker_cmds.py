"""``pgqrs worker ...``: list registered workers, run a handler as a worker."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from pgqrs._cli import exit_codes
from pgqrs._cli.context import CliError, Ctx, pass_ctx

#: Log line format of ``worker run`` (to stderr).
WORKER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Handlers run at once by ``worker run`` unless --concurrency says otherwise.
DEFAULT_WORKER_CONCURRENCY = 1


@click.group()
def worker() -> None:
    """Run workers and see which are registered."""


@worker.command("list")
@pass_ctx
def list_(ctx: Ctx) -> None:
    """Workers known to the database: live, stopped and dead."""
    with ctx.admin() as admin:
        workers = admin.list_workers()
    ctx.emit(
        workers,
        lambda: (
            ctx.table(
                None,
                ["id", "status", "host", "pid", "queues", "leased", "started at", "heartbeat at"],
                [
                    [
                        w.id,
                        w.status,
                        w.hostname,
                        w.pid,
                        ", ".join(w.queues),
                        w.leased,
                        w.started_at,
                        w.heartbeat_at,
                    ]
                    for w in workers
                ],
            )
            if workers
            else ctx.note("no workers registered")
        ),
    )


@worker.command()
@click.argument("target", metavar="MODULE:HANDLER")
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    required=True,
    help="Queue to consume (repeatable); HANDLER handles every one.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 10_000),
    default=DEFAULT_WORKER_CONCURRENCY,
    show_default=True,
    help="Messages handled at once.",
)
@pass_ctx
def run(ctx: Ctx, target: str, queues: tuple[str, ...], concurrency: int) -> None:
    """Run HANDLER (a function in MODULE) on every message of the queues, until stopped.

    MODULE is imported like `python -m` would (the current directory is on the path).
    """
    handler = load_handler(target)
    worker_class = _worker_class()
    if not ctx.debug:  # a long-running process: show the worker's own log (start, stop, failures)
        logging.basicConfig(level=logging.INFO, format=WORKER_LOG_FORMAT, stream=sys.stderr)
        logging.getLogger("psycopg").setLevel(logging.WARNING)
    config = ctx.config()
    runner = worker_class(config, queues=list(queues), concurrency=concurrency)
    for name in queues:
        runner.handler(name)(handler)
    ctx.note(
        f"worker: {target} on {', '.join(queues)} (concurrency {concurrency}); Ctrl-C stops it"
    )
    runner.run()


def load_handler(target: str) -> Callable[..., Any]:
    """The callable named by ``module.path:attribute``, with a usage error if it is not one."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(
            f"invalid handler {target!r}: expected MODULE:HANDLER, e.g. myapp.jobs:handle",
            exit_codes.USAGE,
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import module {module_name!r}: {exc}", exit_codes.USAGE) from exc
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise CliError(
                f"module {module_name!r} has no attribute {attribute!r}", exit_codes.USAGE
            )
        value = getattr(value, part)
    if not callable(value):
        raise CliError(f"{target!r} is not callable", exit_codes.USAGE)
    handler: Callable[..., Any] = value
    return handler


def _worker_class() -> Any:
    """``pgqrs.Worker``, imported only here: the rest of the CLI works without it."""
    import pgqrs

    worker_class = getattr(pgqrs, "Worker", None)
    if worker_class is None:
        raise CliError(
            "this pgqrs has no worker runtime (pgqrs.Worker); upgrade pgqrs", exit_codes.ERROR
        )
    return worker_class
