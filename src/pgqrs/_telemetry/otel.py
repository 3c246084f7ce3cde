"""OpenTelemetry traces and metrics for producers and workers (``pgqrs[otel]``).

Imported only by ``pgqrs.otel``: nothing else in pgqrs imports opentelemetry.
Names follow the OpenTelemetry messaging semantic conventions:

* a single enqueue is one PRODUCER span ``send {queue}``; a batch is one CLIENT
  span ``send {queue}`` linked to a PRODUCER span ``create {queue}`` per
  message, so each message carries its own context;
* the context goes into the message's headers (W3C ``traceparent``, plus
  ``tracestate``/``baggage`` when set, through the global propagator);
* each delivery is one CONSUMER span ``process {queue}``, child of the
  message's creation context and linked to it, current while the handler runs.
  A retried message gives one such span per attempt, all in the same trace.
"""

from __future__ import annotations

import json
import time
import uuid
import weakref
from collections.abc import Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from pgqrs._models import Message
from pgqrs._payload import encode_headers
from pgqrs._telemetry import hooks
from pgqrs._worker.events import Counters, Events, JobEvent

SYSTEM = "pgqrs"
#: Attribute names (semantic conventions, then pgqrs' own under messaging.pgqrs.*).
SYSTEM_ATTR = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
ERROR_TYPE = "error.type"
ATTEMPT = "messaging.pgqrs.attempt"
OUTCOME = "messaging.pgqrs.outcome"
WORKER_ID = "messaging.pgqrs.worker.id"

#: The events after which a delivery's span ends (its outcome is known).
_FINAL = frozenset(("completed", "retried", "dead", "lease_lost", "interrupted", "cancelled"))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pgqrs")
    except Exception:  # an uninstalled checkout
        return "0"


def _inject(header_text: str | None, span: Span, max_bytes: int) -> str | None:
    """The message's headers text with ``span``'s context added. A traceparent
    the caller set is kept: they propagate a context of their own."""
    if not span.get_span_context().is_valid:  # no SDK: nothing to carry, no parsing
        return header_text
    carrier: dict[str, Any] = {} if header_text is None else json.loads(header_text)
    if "traceparent" in carrier:
        return header_text
    before = len(carrier)
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    if len(carrier) == before:  # no valid context (tracing off): nothing to add
        return header_text
    return encode_headers(carrier, max_bytes)


def _string_headers(headers: dict[str, Any]) -> dict[str, str]:
    """Only str values can hold a context (a propagator chokes on others)."""
    return {k: v for k, v in headers.items() if isinstance(v, str)}


class _Publish:
    """The spans of one enqueue call (single: one send span; batch: send + creates)."""

    __slots__ = ("creates", "headers", "send")

    def __init__(self, send: Span, creates: list[Span], headers: list[str | None]) -> None:
        self.send = send
        self.creates = creates
        #: One headers text per message, carrying its context.
        self.headers = headers

    def done(self, messages: list[Message]) -> None:
        if self.creates:
            for span, m in zip(self.creates, messages, strict=False):
                span.set_attribute(MESSAGE_ID, str(m.id))
                span.end()
        elif messages:
            self.send.set_attribute(MESSAGE_ID, str(messages[0].id))
        self.send.end()

    def fail(self, exc: BaseException) -> None:
        for span in (*self.creates, self.send):
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
            span.end()


class _Delivery:
    __slots__ = ("attrs", "begun", "span")

    def __init__(self, span: Span, begun: float, attrs: dict[str, str]) -> None:
        self.span = span
        self.begun = begun
        self.attrs = attrs


class Instrumentation:
    """The tracer, the instruments, and the hooks that use them."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        version = _version()
        self.tracer = trace.get_tracer("pgqrs", version, tracer_provider=tracer_provider)
        meter = metrics.get_meter("pgqrs", version, meter_provider=meter_provider)
        self.sent = meter.create_counter(
            "messaging.client.sent.messages",
            unit="{message}",
            description="Messages enqueued (per enqueue call that succeeded).",
        )
        self.messages = meter.create_counter(
            "pgqrs.worker.messages",
            unit="{message}",
            description="Deliveries settled by a worker, by queue and outcome "
            "(completed, retried, dead, lease_lost, interrupted).",
        )
        self.failures = meter.create_counter(
            "pgqrs.worker.failures",
            unit="{message}",
            description="Handler calls that raised (a retried or dead outcome follows).",
        )
        self.duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="From handler start until the delivery's outcome is written.",
        )
        self.queue_wait = meter.create_histogram(
            "pgqrs.worker.queue_wait",
            unit="s",
            description="First deliveries: from enqueue to dequeue (database clock).",
        )
        self.lease_extensions = meter.create_counter(
            "pgqrs.worker.lease_extensions",
            unit="{lease}",
            description="Leases extended because a handler ran long.",
        )
        self._runtimes: weakref.WeakSet[Any] = weakref.WeakSet()
        meter.create_observable_gauge(
            "pgqrs.worker.in_flight",
            callbacks=[self._observe("in_flight")],
            unit="{message}",
            description="Messages a worker holds leased right now.",
        )
        meter.create_observable_gauge(
            "pgqrs.worker.running",
            callbacks=[self._observe("running")],
            unit="{message}",
            description="Handlers running right now.",
        )

    def _observe(self, field: str) -> Any:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            for runtime in list(self._runtimes):
                counters: Counters = runtime.counters
                yield Observation(
                    getattr(counters, field), {WORKER_ID: str(runtime.worker_id or 0)}
                )

        return callback

    # -- producer ------------------------------------------------------------

    def publish(self, queue: str, n: int, headers: str | None, max_bytes: int) -> _Publish:
        base = {SYSTEM_ATTR: SYSTEM, DESTINATION: queue}
        if n == 1:
            send = self.tracer.start_span(
                f"send {queue}",
                kind=SpanKind.PRODUCER,
                attributes={**base, OPERATION_TYPE: "send", OPERATION_NAME: "send"},
            )
            return _Publish(send, [], [_inject(headers, send, max_bytes)])
        create_attrs = {**base, OPERATION_TYPE: "create", OPERATION_NAME: "create"}
        create_name = f"create {queue}"
        start = self.tracer.start_span
        creates = [
            start(create_name, kind=SpanKind.PRODUCER, attributes=create_attrs) for _ in range(n)
        ]
        texts = [_inject(headers, s, max_bytes) for s in creates]
        send = self.tracer.start_span(
            f"send {queue}",
            kind=SpanKind.CLIENT,
            links=[Link(s.get_span_context()) for s in creates],
            attributes={
                **base,
                OPERATION_TYPE: "send",
                OPERATION_NAME: "send",
                BATCH_COUNT: n,
            },
        )
        return _Publish(send, creates, texts)

    def published(self, queue: str, count: int) -> None:
        self.sent.add(count, {SYSTEM_ATTR: SYSTEM, DESTINATION: queue})

    # -- worker --------------------------------------------------------------

    def worker(self, events: Events, counters: Counters, runtime: Any) -> None:
        """Follow one worker: a span per delivery, metrics per outcome."""
        self._runtimes.add(runtime)
        deliveries: dict[uuid.UUID, _Delivery] = {}
        tracer = self.tracer

        def on_event(event: JobEvent) -> None:
            m = event.message
            if m.lease is None:
                return
            kind = event.kind
            if kind == "started":
                self._started(tracer, deliveries, m, runtime)
                return
            delivery = deliveries.get(m.lease)
            if delivery is None:
                return
            span = delivery.span
            if kind == "failed":
                exc = event.error
                if exc is not None:
                    name = type(exc).__qualname__
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{name}: {exc}"))
                    span.set_attribute(ERROR_TYPE, name)
                    self.failures.add(1, {**delivery.attrs, ERROR_TYPE: name})
                return
            if kind not in _FINAL:
                return
            del deliveries[m.lease]
            span.set_attribute(OUTCOME, kind)
            if kind == "retried":
                span.add_event("retry", {"messaging.pgqrs.retry.delay_s": event.delay or 0.0})
            elif kind == "interrupted":
                span.set_status(Status(StatusCode.ERROR, "the worker stopped first"))
                span.set_attribute(ERROR_TYPE, "interrupted")
            elif kind == "lease_lost":
                span.set_status(Status(StatusCode.ERROR, "lease lost: outcome not written"))
                span.set_attribute(ERROR_TYPE, "lease_lost")
            span.end()
            attrs = {**delivery.attrs, OUTCOME: kind}
            self.messages.add(1, attrs)
            self.duration.record(time.monotonic() - delivery.begun, attrs)

        events.subscribe(None, on_event)

    def _started(
        self,
        tracer: trace.Tracer,
        deliveries: dict[uuid.UUID, _Delivery],
        m: Message,
        runtime: Any,
    ) -> None:
        """On the job's own task, before the handler: start the delivery's span and
        make it current, so the handler's spans are its children. The task (and
        the context copied for a sync handler's thread) ends with the job, so
        nothing is detached."""
        assert m.lease is not None
        parent = propagate.extract(_string_headers(m.headers), context=otel_context.Context())
        created = trace.get_current_span(parent).get_span_context()
        attrs = {SYSTEM_ATTR: SYSTEM, DESTINATION: m.queue}
        span = tracer.start_span(
            f"process {m.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=[Link(created)] if created.is_valid else None,
            attributes={
                **attrs,
                OPERATION_TYPE: "process",
                OPERATION_NAME: "process",
                MESSAGE_ID: str(m.id),
                ATTEMPT: m.attempts,
                WORKER_ID: str(runtime.worker_id or 0),
            },
        )
        deliveries[m.lease] = _Delivery(span, time.monotonic(), attrs)
        if span.is_recording():  # no SDK: nothing would record the handler's spans
            otel_context.attach(trace.set_span_in_context(span))
        if m.attempts == 1 and m.dequeued_at is not None:
            wait = (m.dequeued_at - m.enqueued_at).total_seconds()
            self.queue_wait.record(max(wait, 0.0), attrs)


_current: Instrumentation | None = None


def instrument(*, tracer_provider: Any = None, meter_provider: Any = None) -> Instrumentation:
    """Trace enqueues and deliveries, and record worker metrics, from now on.

    Producers trace their next call; workers created from now on are
    followed (a worker created before is not). ``tracer_provider`` and
    ``meter_provider``: the SDK's providers (default: the global ones).
    """
    global _current
    current = Instrumentation(tracer_provider, meter_provider)
    _current = current

    def publish(queue: str, n: int, headers: str | None, max_bytes: int) -> Any:
        span = current.publish(queue, n, headers, max_bytes)
        return _Counted(span, current, queue)

    hooks.publish = publish
    hooks.worker = current.worker
    return current


class _Counted:
    """A publish span that also counts the messages sent when it succeeds."""

    __slots__ = ("headers", "instrumentation", "queue", "span")

    def __init__(self, span: _Publish, instrumentation: Instrumentation, queue: str) -> None:
        self.span = span
        self.headers = span.headers
        self.instrumentation = instrumentation
        self.queue = queue

    def done(self, messages: list[Message]) -> None:
        self.span.done(messages)
        self.instrumentation.published(self.queue, len(messages))

    def fail(self, exc: BaseException) -> None:
        self.span.fail(exc)


def uninstrument() -> None:
    """Stop tracing new enqueues and following new workers (workers already
    followed keep their subscription until they stop)."""
    global _current
    _current = None
    hooks.publish = None
    hooks.worker = None
