"""``pgqrs metrics serve``: queue health over HTTP for Prometheus (``pgqrs[prometheus]``)."""

from __future__ import annotations

import click

from pgqrs._cli import exit_codes
from pgqrs._cli.context import CliError, Ctx, pass_ctx


@click.group()
def metrics() -> None:
    """Export queue health for Prometheus."""


@metrics.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=9464, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--sample",
    default=10_000,
    show_default=True,
    type=click.IntRange(1),
    help="Messages read per queue and scrape; larger queues are estimated.",
)
@pass_ctx
def serve(ctx: Ctx, host: str, port: int, sample: int) -> None:
    """Serve queue health (ready, delayed, in flight, archived, oldest ready age,
    worker liveness) in Prometheus' text format until interrupted.

    Beyond 127.0.0.1 it needs credentials: $PGQRS_METRICS_TOKEN (Bearer) or
    $PGQRS_METRICS_BASIC_AUTH (user:password).
    """
    try:
        from pgqrs._telemetry import prometheus
    except ImportError as exc:
        raise CliError(
            "pgqrs metrics needs prometheus_client: pip install 'pgqrs[prometheus]'",
            exit_codes.USAGE,
        ) from exc
    token, basic = prometheus.credentials_from_env()
    prometheus.check_exposure(host, token, basic)  # before connecting: fail fast
    collector = prometheus.QueueHealthCollector(ctx.config(), sample=sample)
    try:
        server = prometheus.make_server(collector, host, port, token=token, basic_auth=basic)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    bound_host, bound_port = server.server_address[:2]
    auth = " (credentials required)" if token or basic else ""
    ctx.err.print(f"serving pgqrs metrics on http://{bound_host}:{bound_port}/metrics{auth}")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        collector.close()
