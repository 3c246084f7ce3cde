"""Telemetry hook points: where the producer and the worker call tracing and metrics.

This module imports nothing optional. The hooks stay ``None`` until
``pgqrs.otel.instrument()`` sets them, so an uninstrumented process pays one
attribute read per enqueue call and per worker start, and never imports
opentelemetry (``tests/test_telemetry.py`` checks it in a fresh interpreter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pgqrs._models import Message
    from pgqrs._worker.events import Counters, Events


class PublishSpan(Protocol):
    """One enqueue call being traced: ``done`` or ``fail`` ends it. ``headers``:
    one JSON text per message, each carrying its own trace context."""

    headers: list[str | None]

    def done(self, messages: list[Message]) -> None: ...

    def fail(self, exc: BaseException) -> None: ...


class Publish(Protocol):
    """Start the spans of one enqueue call of ``n`` messages sharing the
    ``headers`` JSON text; the span's ``headers`` are the texts to send."""

    def __call__(self, queue: str, n: int, headers: str | None, max_bytes: int) -> PublishSpan: ...


class WorkerStarted(Protocol):
    """Subscribe to a new worker's events and read its counters."""

    def __call__(self, events: Events, counters: Counters, runtime: Any) -> None: ...


class LeaseObserver(Protocol):
    """Told that ``n`` leases of ``queue`` were ``"extended"``, or found
    ``"lost"`` (expired) when the worker came to extend them."""

    def __call__(self, queue: str, event: str, n: int) -> None: ...


class _Hooks:
    """Module-level slots (one attribute read on the hot path)."""

    __slots__ = ("publish", "worker")

    def __init__(self) -> None:
        self.publish: Publish | None = None
        self.worker: WorkerStarted | None = None


hooks = _Hooks()
