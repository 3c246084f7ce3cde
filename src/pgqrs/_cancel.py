"""Cancel safety for the asyncio API: a round trip that must not be cut.

A task cancelled while awaiting a statement (``task.cancel()``,
``asyncio.wait_for``, a TaskGroup) makes psycopg send the server a cancel
request; a statement that had already run (a dequeue that leased messages, an
archive that committed) is not undone, and its result is dropped with the
task. ``shielded`` lets the round trip finish in the background instead and
hands its result to ``then``, which gives back or records what it did (the
messages a dequeue leased go back with their attempt refunded; an archive is
remembered as done). The caller still sees ``CancelledError`` at once.

The blocking API has no such cancellation (a statement runs to its end);
``tools/async_to_sync.py`` renames ``shielded`` to ``unshielded`` there.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger("pgqrs")

#: Follow-ups still running: the event loop keeps only weak references to tasks.
_BACKGROUND: set[asyncio.Future[Any]] = set()


async def shielded(aw: Awaitable[T], then: Callable[[T], object]) -> T:
    """``await aw``, unless the caller is cancelled first: then ``aw`` still
    runs to its end, and ``then(result)`` (a coroutine is scheduled) handles
    what it did; ``CancelledError`` is raised to the caller at once."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        _keep(task)
        task.add_done_callback(lambda t: _follow_up(t, then))
        raise


def unshielded(value: T, then: Callable[[T], object]) -> T:
    """The blocking twin of ``shielded``: the statement ran to its end already."""
    return value


def _follow_up(task: asyncio.Future[T], then: Callable[[T], object]) -> None:
    if task.cancelled() or task.exception() is not None:
        return  # nothing was done (the statement failed, or the loop is closing)
    try:
        step = then(task.result())
    except Exception:
        logger.exception("cleaning up after a cancelled call failed")
        return
    if inspect.isawaitable(step):
        _keep(asyncio.ensure_future(step))


def _keep(fut: asyncio.Future[Any]) -> None:
    _BACKGROUND.add(fut)
    fut.add_done_callback(_BACKGROUND.discard)
