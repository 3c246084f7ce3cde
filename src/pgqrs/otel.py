"""OpenTelemetry for pgqrs (install ``pgqrs[otel]``): traces across producer and
worker, and worker metrics. See docs/telemetry.md.

    import pgqrs.otel
    pgqrs.otel.instrument()   # uses the global TracerProvider / MeterProvider

Importing this module imports opentelemetry; importing ``pgqrs`` does not.
"""

from __future__ import annotations

try:
    import opentelemetry.trace  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("pgqrs.otel needs the OpenTelemetry API: pip install 'pgqrs[otel]'") from exc

from pgqrs._telemetry.otel import (
    ATTEMPT,
    OUTCOME,
    WORKER_ID,
    Instrumentation,
    instrument,
    uninstrument,
)

__all__ = ["ATTEMPT", "OUTCOME", "WORKER_ID", "Instrumentation", "instrument", "uninstrument"]
