"""Queue health for Prometheus (``pgqrs[prometheus]``): a collector, a WSGI app, a server.

One statement per scrape (sql/queries/metrics_scrape.sql), on one connection
kept between scrapes. It reads at most ``sample`` messages per queue, so a
scrape costs about the same with a million messages waiting as with a
thousand (docs/telemetry.md has the measurement). A failed scrape (database
down, timeout) yields ``pgqrs_scrape_error 1`` and no queue series: Prometheus
sees the error instead of a failed target, and the next scrape reconnects.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pgqrs._config import Config
from pgqrs._errors import InvalidArgument
from pgqrs._sync import _calls as calls
from pgqrs._sync._db import Database

logger = logging.getLogger("pgqrs.metrics")

#: Messages read per queue at most; a queue holding more is estimated.
DEFAULT_SAMPLE = 10_000
#: Seconds without a heartbeat after which a running worker counts as stale
#: (the default dead_after of Admin.reap_workers).
DEFAULT_DEAD_AFTER = 60.0
#: Seconds a scrape's statement may run before it is cancelled.
DEFAULT_SCRAPE_TIMEOUT = 5.0
#: Environment variables holding the endpoint's credentials.
TOKEN_ENV = "PGQRS_METRICS_TOKEN"
BASIC_AUTH_ENV = "PGQRS_METRICS_BASIC_AUTH"

_Gauges = dict[str, GaugeMetricFamily]
#: The statement's metrics whose label column is a Prometheus label.
_TWO_LABELS = frozenset(("messages", "archived", "workers"))


def _gauges() -> _Gauges:
    return {
        "messages": GaugeMetricFamily(
            "pgqrs_queue_messages",
            "Messages in the queue by state: ready, delayed, in_flight "
            "(estimated above the sample size, see pgqrs_queue_estimated).",
            labels=["queue", "state"],
        ),
        "estimated": GaugeMetricFamily(
            "pgqrs_queue_estimated",
            "1 when the queue holds more messages than the scrape reads: "
            "pgqrs_queue_messages is then scaled from the planner's estimate.",
            labels=["queue"],
        ),
        "paused": GaugeMetricFamily(
            "pgqrs_queue_paused", "1 when the queue is paused.", labels=["queue"]
        ),
        "oldest_ready_age": GaugeMetricFamily(
            "pgqrs_queue_oldest_ready_age_seconds",
            "Age of the oldest ready message (0: none ready).",
            labels=["queue"],
        ),
        "archived": GaugeMetricFamily(
            "pgqrs_queue_archived",
            "Archived messages by status (completed, dead, ...); counting stops at "
            "the sample size.",
            labels=["queue", "status"],
        ),
        "workers": GaugeMetricFamily(
            "pgqrs_queue_workers",
            "Running workers serving the queue: alive (recent heartbeat) or stale.",
            labels=["queue", "state"],
        ),
        "last_heartbeat_age": GaugeMetricFamily(
            "pgqrs_queue_last_heartbeat_age_seconds",
            "Seconds since the freshest heartbeat of a running worker serving the queue.",
            labels=["queue"],
        ),
    }


class QueueHealthCollector(Collector):
    """A prometheus_client collector of every queue's health in one schema.

    Register it on your own registry (``registry.register(collector)``) to serve
    it from your application, or use ``make_app`` / ``serve``.
    """

    def __init__(
        self,
        config: Config,
        *,
        sample: int = DEFAULT_SAMPLE,
        dead_after: float = DEFAULT_DEAD_AFTER,
        timeout: float = DEFAULT_SCRAPE_TIMEOUT,
    ) -> None:
        if not isinstance(config, Config):
            raise InvalidArgument(f"config must be a pgqrs.Config, got {config!r}")
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            raise InvalidArgument(f"sample must be an int >= 1, got {sample!r}")
        for name, value in (("dead_after", dead_after), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InvalidArgument(f"{name} must be a number of seconds > 0, got {value!r}")
        self.config = config
        self.sample = sample
        self.dead_after = float(dead_after)
        self.timeout = float(timeout)
        #: Runs the typed query on the collector's own connection (its pool is never opened).
        self._db = Database(config)
        self._conn: psycopg.Connection[Any] | None = None
        #: Scrapes may come from several server threads: one at a time on the connection.
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Any]:
        """Nothing: describing would mean querying at registration time."""
        return []

    def collect(self) -> Iterator[Any]:
        begun = time.perf_counter()
        error = GaugeMetricFamily(
            "pgqrs_scrape_error", "1 when the last scrape of the database failed."
        )
        try:
            rows = self.scrape()
        except Exception as exc:
            logger.warning("pgqrs metrics scrape failed: %s: %s", type(exc).__name__, exc)
            error.add_metric([], 1.0)
            yield error
        else:
            gauges = _gauges()
            for metric, queue, label, value in rows:
                family = gauges[metric]
                labels = [queue, label] if metric in _TWO_LABELS else [queue]
                family.add_metric(labels, float(value))
            yield from gauges.values()
            error.add_metric([], 0.0)
            yield error
        duration = GaugeMetricFamily(
            "pgqrs_scrape_duration_seconds", "Seconds the last scrape of the database took."
        )
        duration.add_metric([], time.perf_counter() - begun)
        yield duration

    def scrape(self) -> list[tuple[str, str, str, float]]:
        """The statement's rows: (metric, queue, label, value)."""
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed:
                conn = self._conn = psycopg.connect(
                    self.config.dsn,
                    autocommit=True,
                    connect_timeout=max(1, round(self.config.connect_timeout)),
                    application_name=f"{self.config.application_name}-metrics",
                    prepare_threshold=None,  # behind pgBouncer too
                    cursor_factory=psycopg.RawCursor,  # $n parameters, as sql/ writes them
                )
            try:
                with conn.transaction(), conn.cursor() as cur:
                    # SET LOCAL: ends with the transaction (pgBouncer keeps no session state).
                    cur.execute(
                        "SELECT set_config('statement_timeout', $1, true)",
                        [f"{round(self.timeout * 1000)}ms"],
                    )
                    return calls.metrics_scrape(
                        self._db, sample=self.sample, dead_after=self.dead_after, connection=conn
                    )
            except BaseException:
                self._conn = None
                conn.close()
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def make_app(
    collector: QueueHealthCollector,
    *,
    token: str | None = None,
    basic_auth: str | None = None,
) -> WsgiApp:
    """A WSGI app serving ``collector`` on any path; with ``token`` (Bearer) or
    ``basic_auth`` (``"user:password"``) set, other requests get 401.

    (For ASGI: ``prometheus_client.make_asgi_app(registry)`` over a registry
    holding the collector.)
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    app = make_wsgi_app(registry)
    if token is None and basic_auth is None:
        return app
    accepted = []
    if token is not None:
        accepted.append(f"Bearer {token}".encode())
    if basic_auth is not None:
        if ":" not in basic_auth:
            raise InvalidArgument(
                f"{BASIC_AUTH_ENV} must be 'user:password', got a value without ':'"
            )
        accepted.append(b"Basic " + base64.b64encode(basic_auth.encode()))

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        # compare_digest against each: no early exit on the first differing byte.
        if any([hmac.compare_digest(given, a) for a in accepted]):
            served: Iterable[bytes] = app(environ, start_response)
            return served
        challenge = [("WWW-Authenticate", 'Basic realm="pgqrs metrics"')] if basic_auth else []
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), *challenge])
        return [b"unauthorized\n"]

    return guarded


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def credentials_from_env() -> tuple[str | None, str | None]:
    """The endpoint's token and basic-auth pair from the environment (empty: unset)."""
    return os.environ.get(TOKEN_ENV) or None, os.environ.get(BASIC_AUTH_ENV) or None


def check_exposure(host: str, token: str | None, basic_auth: str | None) -> None:
    """Refuse to serve queue names and sizes beyond this machine without credentials."""
    if not is_loopback(host) and token is None and basic_auth is None:
        raise InvalidArgument(
            f"refusing to serve metrics on {host!r} without credentials: set "
            f"{TOKEN_ENV} (a bearer token) or {BASIC_AUTH_ENV} ('user:password'), "
            "or bind to 127.0.0.1"
        )


def make_server(
    collector: QueueHealthCollector,
    host: str = "127.0.0.1",
    port: int = 9464,
    *,
    token: str | None = None,
    basic_auth: str | None = None,
) -> Any:
    """A threading WSGI server for ``collector`` (call ``serve_forever``)."""
    from wsgiref.simple_server import make_server as wsgi_server

    from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

    check_exposure(host, token, basic_auth)
    app = make_app(collector, token=token, basic_auth=basic_auth)
    server_class = ThreadingWSGIServer
    if ":" in host:  # IPv6
        import socket

        class V6(ThreadingWSGIServer):
            address_family = socket.AF_INET6

        server_class = V6
    return wsgi_server(host, port, app, server_class, handler_class=_SilentHandler)
