"""``pgqrs dashboard``: serve the web dashboard (needs the ``dashboard`` extra)."""

from __future__ import annotations

import ipaddress

import click

from pgqrs._cli import exit_codes
from pgqrs._cli.context import CliError, Ctx, pass_ctx

#: Environment variables for the credentials (kept out of the process list).
TOKEN_ENV = "PGQRS_DASHBOARD_TOKEN"
BASIC_AUTH_ENV = "PGQRS_DASHBOARD_BASIC_AUTH"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses only this machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_basic_auth(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise CliError(
            "invalid basic-auth credentials: give them as USER:PASSWORD, both non-empty",
            exit_codes.USAGE,
        )
    return user, password


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--read-only", is_flag=True, help="Show everything, offer and accept no action.")
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    metavar="TOKEN",
    help=f"Require this access token (at least 8 characters). Better: set ${TOKEN_ENV}.",
)
@click.option(
    "--basic-auth",
    envvar=BASIC_AUTH_ENV,
    metavar="USER:PASSWORD",
    help=f"Require HTTP basic credentials. Better: set ${BASIC_AUTH_ENV}.",
)
@pass_ctx
def dashboard(
    ctx: Ctx,
    host: str,
    port: int,
    read_only: bool,
    token: str | None,
    basic_auth: str | None,
) -> None:
    """Serve the web dashboard: queues, messages, archive, workers.

    Listens on 127.0.0.1 unless --host says otherwise; any other address
    needs --token or --basic-auth (or their environment variables), else the
    command refuses to start. Use --read-only with a role that can only read.
    """
    if token is not None and basic_auth is not None:
        raise CliError("give --token or --basic-auth, not both", exit_codes.USAGE)
    if token is not None and len(token) < 8:
        raise CliError("the dashboard token must be at least 8 characters", exit_codes.USAGE)
    credentials = parse_basic_auth(basic_auth) if basic_auth is not None else None
    if not is_loopback(host) and token is None and credentials is None:
        raise CliError(
            f"refusing to serve the dashboard on {host} without credentials: anyone who can "
            f"reach it could purge queues. Set {TOKEN_ENV} (or {BASIC_AUTH_ENV}=user:password), "
            "or listen on 127.0.0.1",
            exit_codes.USAGE,
        )
    try:
        import uvicorn

        from pgqrs._dashboard.app import create_app
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs the dashboard extra ({exc.name} is missing): "
            "pip install 'pgqrs[dashboard]'",
            exit_codes.USAGE,
        ) from None
    config = ctx.config()
    app = create_app(config, read_only=read_only, token=token, basic_auth=credentials)
    shown = f"[{host}]" if ":" in host else host
    mode = " (read-only)" if read_only else ""
    auth = " token required" if token else (" basic auth required" if credentials else "")
    ctx.note(
        f"pgqrs dashboard{mode} on http://{shown}:{port}/ (schema {config.schema});"
        f"{auth or ' no credentials'}"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
