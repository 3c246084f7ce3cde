"""Queue health for Prometheus (install ``pgqrs[prometheus]``). See docs/telemetry.md.

    from prometheus_client import REGISTRY
    from pgqrs.prometheus import QueueHealthCollector
    REGISTRY.register(QueueHealthCollector(pgqrs.Config(dsn)))

or ``pgqrs metrics serve`` for a standalone endpoint.
"""

from __future__ import annotations

try:
    import prometheus_client  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "pgqrs.prometheus needs prometheus_client: pip install 'pgqrs[prometheus]'"
    ) from exc

from pgqrs._telemetry.prometheus import (
    BASIC_AUTH_ENV,
    DEFAULT_DEAD_AFTER,
    DEFAULT_SAMPLE,
    TOKEN_ENV,
    QueueHealthCollector,
    make_app,
    make_server,
)

__all__ = [
    "BASIC_AUTH_ENV",
    "DEFAULT_DEAD_AFTER",
    "DEFAULT_SAMPLE",
    "TOKEN_ENV",
    "QueueHealthCollector",
    "make_app",
    "make_server",
]
