"""The dashboard's ASGI application: server-rendered pages, POST-only actions.

Safety, in one place:
  * access: an optional token (``Authorization: Bearer``, or a session cookie
    set by the login form) or HTTP basic credentials, compared in constant time;
  * CSRF: every POST carries the per-browser token of the ``pgqrs_csrf``
    cookie (SameSite=Strict) in a form field, and a cross-site Origin is refused;
  * ``read_only``: no action is rendered and every POST but the login is refused;
  * output: Jinja2 autoescaping everywhere, and a Content-Security-Policy that
    allows only the package's own script and stylesheet (no inline script).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgqrs._config import Config
from pgqrs._dashboard.queries import (
    EXACT_COUNT_LIMIT,
    PAGE_SIZE,
    SERIES_ROW_LIMIT,
    STATES,
    Count,
    Data,
    QueueRow,
    Series,
)
from pgqrs._errors import ConfigError, Error
from pgqrs._validate import validate_queue_name, validate_status

HERE = Path(__file__).parent
logger = logging.getLogger("pgqrs.dashboard")
CSRF_COOKIE = "pgqrs_csrf"
SESSION_COOKIE = "pgqrs_session"
FLASH_COOKIE = "pgqrs_flash"
#: Seconds between two live refreshes of the queues and queue pages.
REFRESH_SECONDS = 5
#: The chart windows a queue page offers, in seconds.
WINDOWS = {"hour": 3600.0, "day": 86400.0}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def create_app(
    config: Config,
    *,
    read_only: bool = False,
    token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    pool: AsyncConnectionPool | None = None,
) -> ASGIApp:
    """The dashboard as an ASGI app, to serve alone or mount in your own app.

    ``token`` or ``basic_auth`` (user, password) protects every page; without
    either, anyone who reaches the app may use it (fine on 127.0.0.1, which is
    why ``pgqrs dashboard`` refuses any other address without one).
    ``read_only`` hides and refuses every action. ``pool`` shares an open
    pool of your own instead of the small one the app opens for itself.
    """
    if not isinstance(config, Config):
        raise ConfigError(
            f"expected a pgqrs.Config, got {type(config).__name__} "
            "(build one with pgqrs.Config.from_dsn(...))"
        )
    if token is not None and basic_auth is not None:
        raise ConfigError("give the dashboard a token or basic-auth credentials, not both")
    if token is not None and (not isinstance(token, str) or len(token) < 8):
        raise ConfigError("the dashboard token must be a string of at least 8 characters")
    if basic_auth is not None and (
        not isinstance(basic_auth, tuple)
        or len(basic_auth) != 2
        or not all(isinstance(p, str) and p for p in basic_auth)
        or ":" in basic_auth[0]
    ):
        raise ConfigError(
            "basic_auth must be (user, password), both non-empty, the user without ':'"
        )
    dashboard = Dashboard(config, read_only=read_only, pool=pool)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await dashboard.data.close()

    routes = [
        Route("/", dashboard.queues_page, name="queues"),
        Route("/queues/{name}", dashboard.queue_page, name="queue"),
        Route("/queues/{name}/pause", dashboard.pause, methods=["POST"]),
        Route("/queues/{name}/resume", dashboard.resume, methods=["POST"]),
        Route("/queues/{name}/purge", dashboard.purge, methods=["POST"]),
        Route("/messages/{id:int}", dashboard.message_page, name="message"),
        Route("/messages/{id:int}/retry", dashboard.retry, methods=["POST"]),
        Route("/messages/{id:int}/delete", dashboard.delete, methods=["POST"]),
        Route("/messages/{id:int}/cancel", dashboard.cancel, methods=["POST"]),
        Route("/messages/{id:int}/redrive", dashboard.redrive_one, methods=["POST"]),
        Route("/archive", dashboard.archive_page, name="archive"),
        Route("/archive/redrive", dashboard.redrive_many, methods=["POST"]),
        Route("/workers", dashboard.workers_page, name="workers"),
        Route("/schedules", dashboard.schedules_page, name="schedules"),
        Route("/login", dashboard.login_page, methods=["GET", "POST"], name="login"),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    return Guard(app, dashboard, token=token, basic_auth=basic_auth)


class Guard:
    """ASGI middleware: security headers on every response, then access control."""

    def __init__(
        self,
        app: ASGIApp,
        dashboard: Dashboard,
        *,
        token: str | None,
        basic_auth: tuple[str, str] | None,
    ) -> None:
        self.app = app
        self.dashboard = dashboard
        self.token = token
        self.basic_auth = basic_auth
        dashboard.uses_login = token is not None
        secret = token or (":".join(basic_auth) if basic_auth else "")
        #: The session cookie's value: derived from the token, so it proves the
        #: token was given without storing it in the browser.
        self.session_value = hmac.new(
            secret.encode(), b"pgqrs-dashboard-session", hashlib.sha256
        ).hexdigest()
        dashboard.session_value = self.session_value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        request = Request(scope)
        refusal = self.refuse(request)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refuse(self, request: Request) -> Response | None:
        """The response refusing this request, or None when it may go on."""
        path = request.scope.get("path", "")
        root = request.scope.get("root_path", "")
        local = path[len(root) :] if root and path.startswith(root) else path
        if self.basic_auth is not None:
            if self._basic_ok(request.headers.get("authorization", "")):
                return None
            return PlainTextResponse(
                "authentication required",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="pgqrs dashboard", charset="UTF-8"'},
            )
        if self.token is None or local.startswith(("/static/", "/login")):
            return None
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and hmac.compare_digest(
            header[7:].strip().encode(), self.token.encode()
        ):
            return None
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), self.session_value.encode()):
            return None
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            target = local + (("?" + request.url.query) if request.url.query else "")
            return RedirectResponse(
                f"{root}/login?{urllib.parse.urlencode({'next': target})}", status_code=303
            )
        return PlainTextResponse("authentication required", status_code=401)

    def _basic_ok(self, header: str) -> bool:
        assert self.basic_auth is not None
        if not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        user_ok = hmac.compare_digest(user.encode(), self.basic_auth[0].encode())
        password_ok = hmac.compare_digest(password.encode(), self.basic_auth[1].encode())
        return user_ok and password_ok


class Refused(Exception):
    """A request the dashboard refuses: an HTTP status and the reason shown."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Handler = Callable[[Request], Awaitable[Response]]


class Dashboard:
    """The pages and actions (Starlette endpoints) over one ``Data``."""

    def __init__(
        self, config: Config, *, read_only: bool, pool: AsyncConnectionPool | None
    ) -> None:
        self.config = config
        self.read_only = read_only
        self.data = Data(config, pool)
        self.uses_login = False
        self.session_value = ""
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            undefined=StrictUndefined,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            count=format_count,
            age=format_age,
            when=format_when,
            pretty=pretty_json,
            number=format_number,
            rate=format_rate,
            setting=format_setting,
        )

    # --- rendering ---------------------------------------------------------

    def render(
        self, request: Request, template: str, http_status: int = 200, **context: Any
    ) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or ""
        new_csrf = not _valid_csrf_cookie(csrf)
        if new_csrf:
            csrf = secrets.token_urlsafe(32)
        root = request.scope.get("root_path", "")
        flash = request.cookies.get(FLASH_COOKIE)
        html = self.env.get_template(template).render(
            root=root,
            csrf=csrf,
            read_only=self.read_only,
            flash=urllib.parse.unquote(flash) if flash else None,
            refresh=REFRESH_SECONDS,
            path=request.url.path,
            now=datetime.datetime.now(datetime.timezone.utc),
            schema=self.config.schema,
            **context,
        )
        response = HTMLResponse(html, status_code=http_status)
        cookie_path = root or "/"
        secure = request.url.scheme == "https"
        if new_csrf:
            response.set_cookie(
                CSRF_COOKIE, csrf, path=cookie_path, httponly=True, samesite="strict", secure=secure
            )
        if flash:
            response.delete_cookie(FLASH_COOKIE, path=cookie_path)
        return response

    def done(self, request: Request, target: str, message: str) -> Response:
        """Redirect after an action (POST/redirect/GET), with a one-time message."""
        root = request.scope.get("root_path", "")
        response = RedirectResponse(root + target, status_code=303)
        response.set_cookie(
            FLASH_COOKIE,
            urllib.parse.quote(message[:300]),
            path=root or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def error(self, request: Request, status: int, reason: str) -> Response:
        return self.render(
            request,
            "error.html",
            http_status=status,
            title=f"Error {status}",
            status_code=status,
            reason=reason,
        )

    async def guarded(self, request: Request, run: Handler) -> Response:
        try:
            return await run(request)
        except Refused as exc:
            return self.error(request, exc.status, exc.reason)
        except Error as exc:
            status = 403 if "permission denied" in str(exc) else 500
            return self.error(request, status, str(exc))
        except Exception:
            logger.exception("dashboard: %s %s failed", request.method, request.url.path)
            return self.error(request, 500, "internal error (logged by the server)")

    async def action_form(self, request: Request) -> FormData:
        """The form of an action POST, after the read-only and CSRF checks."""
        if self.read_only:
            raise Refused(403, "this dashboard is read-only: actions are disabled")
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            expected = f"{request.url.scheme}://{request.url.netloc}"
            if origin != expected:
                raise Refused(403, "cross-site request refused (Origin does not match)")
        form = await request.form()
        sent = form.get("csrf")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if (
            not isinstance(sent, str)
            or not cookie
            or not hmac.compare_digest(sent.encode(), cookie.encode())
        ):
            raise Refused(403, "missing or wrong CSRF token: reload the page and try again")
        return form

    # --- pages -------------------------------------------------------------

    async def queues_page(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            queues = await self.data.queues()
            return self.render(
                request,
                "queues.html",
                title="Queues",
                queues=queues,
                totals=_totals(queues),
                exact_limit=EXACT_COUNT_LIMIT,
                limit_columns=_limit_columns(queues, brief=True),
            )

        return await self.guarded(request, run)

    async def queue_page(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            name = _queue_name(request.path_params["name"])
            window = request.query_params.get("window", "hour")
            if window not in WINDOWS:
                raise Refused(400, f"unknown chart window {window!r}: use hour or day")
            state = request.query_params.get("state") or None
            if state is not None and state not in STATES:
                raise Refused(400, f"unknown state {state!r}: use one of {', '.join(STATES)}")
            after = _int_pair(request.query_params.get("after"))
            # Independent statements, on separate pool connections at once.
            queue, series, page = await asyncio.gather(
                self.data.queue(name),
                self.data.series(name, WINDOWS[window]),
                self.data.messages(name, state=state, after=after),
            )
            if queue is None:
                raise Refused(404, f"no queue named {name!r}")
            return self.render(
                request,
                "queue.html",
                title=name,
                queue=queue,
                chart=chart(series, WINDOWS[window]),
                series_limit=SERIES_ROW_LIMIT,
                window=window,
                state=state,
                states=STATES,
                page=page,
                after=after,
                next_after=f"{page.next_key[0]}_{page.next_key[1]}" if page.next_key else None,
                limit_columns=_limit_columns([queue]),
            )

        return await self.guarded(request, run)

    async def message_page(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            message_id = int(request.path_params["id"])
            message = await self.data.message(message_id)
            if message is None:
                raise Refused(404, f"no message {message_id} (waiting or archived)")
            error = message["error"]
            return self.render(
                request,
                "message.html",
                title=f"Message {message_id}",
                m=message,
                error_parts=_error_parts(error),
            )

        return await self.guarded(request, run)

    async def archive_page(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            params = request.query_params
            queue = params.get("queue") or None
            if queue is not None:
                queue = _queue_name(queue)
            status = params.get("status") or None
            if status is not None:
                try:
                    validate_status(status)
                except Error as exc:
                    raise Refused(400, str(exc)) from None
            since = _time(params.get("since"), "since")
            until = _time(params.get("until"), "until")
            after = _time_key(params.get("after"))
            (rows, next_key), counts = await asyncio.gather(
                self.data.archive(
                    queue=queue, status=status, since=since, until=until, after=after
                ),
                self.data.archive_counts(),
            )
            query = {k: v for k, v in params.items() if k != "after" and v}
            next_query = None
            if next_key is not None:
                next_query = urllib.parse.urlencode(
                    {**query, "after": f"{next_key[0].isoformat()}_{next_key[1]}"}
                )
            return self.render(
                request,
                "archive.html",
                title="Archive",
                rows=rows,
                counts=counts,
                statuses=sorted(
                    {s for st in counts.values() for s in st} | {"completed", "dead", "cancelled"}
                ),
                queue=queue,
                status=status,
                since=params.get("since", ""),
                until=params.get("until", ""),
                next_query=next_query,
                first_query=urllib.parse.urlencode(query),
                is_first=after is None,
                page_size=PAGE_SIZE,
            )

        return await self.guarded(request, run)

    async def schedules_page(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            schedules = await self.data.schedules()
            return self.render(request, "schedules.html", title="Schedules", schedules=schedules)

        return await self.guarded(request, run)

    async def workers_page(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            workers = await self.data.workers()
            return self.render(request, "workers.html", title="Workers", workers=workers)

        return await self.guarded(request, run)

    async def login_page(self, request: Request) -> Response:
        root = request.scope.get("root_path", "")
        target = request.query_params.get("next", "/")
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = "/"
        if not self.uses_login:
            return RedirectResponse(root + "/", status_code=303)
        if request.method == "GET":
            return self.render(request, "login.html", title="Sign in", next=target, failed=False)
        form = await request.form()
        sent, cookie = form.get("csrf"), request.cookies.get(CSRF_COOKIE, "")
        if (
            not isinstance(sent, str)
            or not cookie
            or not hmac.compare_digest(sent.encode(), cookie.encode())
        ):
            return self.error(request, 403, "missing or wrong CSRF token: reload the page")
        token = form.get("token")
        guard_token = self.session_value
        given = hmac.new(
            (token if isinstance(token, str) else "").encode(),
            b"pgqrs-dashboard-session",
            hashlib.sha256,
        ).hexdigest()
        if not hmac.compare_digest(given.encode(), guard_token.encode()):
            return self.render(
                request, "login.html", http_status=401, title="Sign in", next=target, failed=True
            )
        response = RedirectResponse(root + target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            guard_token,
            path=root or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    # --- actions -----------------------------------------------------------

    async def pause(self, request: Request) -> Response:
        return await self._set_paused(request, True)

    async def resume(self, request: Request) -> Response:
        return await self._set_paused(request, False)

    async def _set_paused(self, request: Request, paused: bool) -> Response:
        async def run(request: Request) -> Response:
            await self.action_form(request)
            name = _queue_name(request.path_params["name"])
            if not await self.data.set_paused(name, paused):
                raise Refused(404, f"no queue named {name!r}")
            verb = "paused" if paused else "resumed"
            return self.done(request, _queue_path(name), f"Queue {name} {verb}.")

        return await self.guarded(request, run)

    async def purge(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            form = await self.action_form(request)
            name = _queue_name(request.path_params["name"])
            if form.get("confirm") != name:
                raise Refused(
                    400, f"not purged: type the queue's name ({name}) in the box to confirm"
                )
            purged = await self.data.purge(name)
            if purged is None:
                raise Refused(404, f"no queue named {name!r}")
            return self.done(
                request, _queue_path(name), f"Queue {name} purged: {purged} message(s) deleted."
            )

        return await self.guarded(request, run)

    async def retry(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            await self.action_form(request)
            message_id = int(request.path_params["id"])
            if not await self.data.retry(message_id):
                raise Refused(
                    409,
                    f"message {message_id} was not made visible: it is ready already, "
                    "leased by a consumer, archived or gone",
                )
            return self.done(
                request, f"/messages/{message_id}", f"Message {message_id} is ready now."
            )

        return await self.guarded(request, run)

    async def cancel(self, request: Request) -> Response:
        """Admin.cancel from the message page: archived as cancelled at once, or
        (running) marked for its worker to stop."""

        async def run(request: Request) -> Response:
            await self.action_form(request)
            message_id = int(request.path_params["id"])
            outcome, status = await self.data.cancel(message_id)
            if outcome == "not_found":
                raise Refused(404, f"no message {message_id}: nothing to cancel")
            if outcome == "archived":
                raise Refused(
                    409,
                    f"message {message_id} is already archived with status {status}: "
                    "nothing to cancel",
                )
            note = (
                f"Message {message_id} cancelled."
                if outcome == "cancelled"
                else f"Cancellation of message {message_id} requested: its worker stops it."
            )
            return self.done(request, f"/messages/{message_id}", note)

        return await self.guarded(request, run)

    async def delete(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            form = await self.action_form(request)
            message_id = int(request.path_params["id"])
            archived = form.get("where") == "archive"
            message = await self.data.message(message_id)
            if not await self.data.delete(message_id, archived=archived):
                raise Refused(404, f"message {message_id} is gone already")
            back = _queue_path(message["queue"]) if message and not archived else "/archive"
            return self.done(request, back, f"Message {message_id} deleted.")

        return await self.guarded(request, run)

    async def redrive_one(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            await self.action_form(request)
            message_id = int(request.path_params["id"])
            message = await self.data.message(message_id)
            if message is None or message["where_"] != "archive":
                raise Refused(404, f"message {message_id} is not in the archive")
            moved = await self.data.redrive(message["queue"], message["status"], [message_id])
            if not moved:
                raise Refused(
                    409,
                    f"message {message_id} stays archived: its queue is gone, or a waiting "
                    "message holds its dedup key",
                )
            return self.done(
                request,
                f"/messages/{message_id}",
                f"Message {message_id} is back on queue {message['queue']}, ready now.",
            )

        return await self.guarded(request, run)

    async def redrive_many(self, request: Request) -> Response:
        async def run(request: Request) -> Response:
            form = await self.action_form(request)
            back = "/archive"
            query = form.get("back")
            if isinstance(query, str) and query:
                back += "?" + query
            if form.get("all") == "1":
                queue = _queue_name(str(form.get("queue") or ""))
                status = str(form.get("status") or "")
                try:
                    validate_status(status)
                except Error as exc:
                    raise Refused(400, str(exc)) from None
                moved = await self.data.redrive(queue, status, None)
                return self.done(
                    request, back, f"Redrove {len(moved)} {status} message(s) to queue {queue}."
                )
            ids: list[int] = []
            for raw in form.getlist("id"):
                try:
                    ids.append(int(str(raw)))
                except ValueError:
                    raise Refused(400, f"not a message id: {raw!r}") from None
            if not ids:
                raise Refused(400, "no message selected: tick the ones to redrive")
            moved_total = 0
            groups: dict[tuple[str, str], list[int]] = {}
            for message_id in ids:
                message = await self.data.message(message_id)
                if message is not None and message["where_"] == "archive":
                    groups.setdefault((message["queue"], message["status"]), []).append(message_id)
            for (queue, status), group in groups.items():
                moved_total += len(await self.data.redrive(queue, status, group))
            return self.done(
                request, back, f"Redrove {moved_total} of {len(ids)} selected message(s)."
            )

        return await self.guarded(request, run)


# --- helpers -------------------------------------------------------------------


def _valid_csrf_cookie(value: str) -> bool:
    return 32 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


def _queue_name(name: str) -> str:
    try:
        return validate_queue_name(name)
    except Error as exc:
        raise Refused(400, str(exc)) from None


def _queue_path(name: str) -> str:
    return "/queues/" + urllib.parse.quote(name, safe="")


def _int_pair(raw: str | None) -> tuple[int, int] | None:
    if not raw:
        return None
    try:
        a, b = raw.split("_", 1)
        return int(a), int(b)
    except ValueError:
        raise Refused(400, f"bad page key {raw!r}") from None


def _time(raw: str | None, what: str) -> datetime.datetime | None:
    if not raw:
        return None
    try:
        value = datetime.datetime.fromisoformat(raw)
    except ValueError:
        raise Refused(400, f"bad {what} time {raw!r}: use YYYY-MM-DDTHH:MM (UTC)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


def _time_key(raw: str | None) -> tuple[datetime.datetime, int] | None:
    if not raw:
        return None
    stamp, _, ident = raw.rpartition("_")
    moment = _time(stamp, "page key")
    try:
        return (moment, int(ident)) if moment else None
    except ValueError:
        raise Refused(400, f"bad page key {raw!r}") from None


def _totals(queues: list[QueueRow]) -> dict[str, Count]:
    out = {}
    for field in ("ready", "in_flight", "delayed", "dead", "archived"):
        counts = [getattr(q, field) for q in queues]
        out[field] = Count(sum(c.value for c in counts), all(c.exact for c in counts))
    return out


#: Columns of the queues table shown as their own values (the rest are limits).
_KNOWN_COLUMNS = {"name", "paused", "created_at"}


#: Settings the queue page lists but the (wide) queues table leaves out.
_QUEUE_PAGE_ONLY = {"visibility_timeout", "max_attempts"}


def _limit_columns(queues: list[QueueRow], *, brief: bool = False) -> list[str]:
    """The settings columns: every one on a queue's page (visibility timeout,
    max attempts, retention, limits); ``brief``, for the queues table, only
    those an operator scans across queues (retention, limits)."""
    seen: dict[str, None] = {}
    for q in queues:
        for key in q.settings:
            if key not in _KNOWN_COLUMNS and not (brief and key in _QUEUE_PAGE_ONLY):
                seen[key] = None
    return list(seen)


def _error_parts(error: Any) -> list[tuple[str, Any]]:
    """An error document as (label, value) sections, the innermost error last."""
    parts: list[tuple[str, Any]] = []
    while isinstance(error, dict):
        parts.append(("error", error))
        error = error.get("last_error")
    return parts


def format_count(count: Count) -> str:
    if count.exact:
        return f"{count.value:,}"
    value = count.value
    if value >= 1_000_000:
        return f"~{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"~{value / 1000:.0f}k"
    return f"~{value:,}"


_INTERVAL = re.compile(r"(?:(\d+) days? )?(\d+):(\d\d):(\d\d(?:\.\d+)?)")


def format_setting(value: Any) -> str:
    """A column of the queues table as JSON gave it: intervals as 2m, times as UTC."""
    if value is None:
        return "-"
    if isinstance(value, str):
        interval = _INTERVAL.fullmatch(value)
        if interval:
            days, hours, minutes, secs = interval.groups()
            total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(secs)
            return format_age(total)
        try:
            return format_when(datetime.datetime.fromisoformat(value))
        except ValueError:
            return value
    return str(value)


def format_number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def format_rate(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0:
        return "in " + format_age(-seconds)
    if seconds < 1:
        return "<1s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m {seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d {seconds % 86400 // 3600:.0f}h"


def format_when(moment: datetime.datetime | None, now: datetime.datetime | None = None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


#: Series drawn on a queue's chart, in drawing order.
CHART_SERIES = ("enqueued", "completed", "failed", "dead")


def chart(series: list[Series], window: float) -> dict[str, Any]:
    """An SVG line chart's geometry (the template draws it; no script needed)."""
    width, height, left, right, top, bottom = 900, 220, 48, 12, 12, 26
    now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    minutes = int(window // 60)
    start = now - datetime.timedelta(minutes=minutes - 1)
    first = int(start.timestamp())
    by_name = {s.name: s for s in series}
    drawn = [by_name.get(n) or Series(n, {}) for n in CHART_SERIES]
    drawn += [s for s in series if s.name not in CHART_SERIES and s.points]
    plot_w, plot_h = width - left - right, height - top - bottom
    prepared: list[tuple[Series, list[float], int]] = []
    for s in drawn:
        # Minute index of each point (aware datetimes hash slowly: convert once).
        values: list[float] = [0.0] * minutes
        for moment, n in s.points.items():
            i = (moment - first) // 60
            if 0 <= i < minutes:
                values[i] = n
        smooth = 1
        if s.sampled > 1:
            # One in `sampled` messages was read: a minute holds a few samples at
            # most, so draw the moving average over enough minutes to be readable.
            smooth = min(61, 3 * s.sampled) | 1
            values = _moving_average(values, smooth)
        prepared.append((s, values, smooth))
    nice = _nice_ceiling(math.ceil(max([1.0] + [max(v, default=0) for _, v, _ in prepared])))

    def x(i: int) -> float:
        return left + plot_w * i / max(minutes - 1, 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / nice)

    xs = [f"{x(i):.1f}," for i in range(minutes)]

    def polyline(values: list[float]) -> str:
        if not any(values):  # a flat line needs two points, not 1,440
            return f"{xs[0]}{y(0):.1f} {xs[-1]}{y(0):.1f}"
        return " ".join(f"{xs[i]}{y(v):.1f}" for i, v in enumerate(values))

    lines = [
        {
            "name": s.name,
            "points": polyline(values),
            "total": s.total,
            "cut": s.cut,
            "sampled": s.sampled,
            "smooth": smooth,
            "css": s.name if s.name in CHART_SERIES else "other",
        }
        for s, values, smooth in prepared
    ]
    grid = [{"y": y(int(nice * f)), "label": f"{int(nice * f):,}"} for f in (0, 0.5, 1)]
    ticks = []
    step = 10 if minutes <= 60 else 180
    for i in range(0, minutes, step):
        tick = start + datetime.timedelta(minutes=i)
        ticks.append({"x": x(i), "label": tick.strftime("%H:%M")})
    return {
        "width": width,
        "height": height,
        "lines": lines,
        "grid": grid,
        "ticks": ticks,
        "left": left,
        "right": width - right,
        "bottom": top + plot_h,
    }


def _moving_average(values: list[float], width: int) -> list[float]:
    """Centred moving average over ``width`` (odd) points, shorter at the edges."""
    half = width // 2
    sums = [0.0]
    for v in values:
        sums.append(sums[-1] + v)
    out = []
    for i in range(len(values)):
        lo, hi = max(0, i - half), min(len(values), i + half + 1)
        out.append((sums[hi] - sums[lo]) / (hi - lo))
    return out


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at least ``value``."""
    exponent = int(10 ** max(0, math.floor(math.log10(max(value, 1)))))
    for factor in (1, 2, 5, 10):
        if factor * exponent >= value:
            return factor * exponent
    return 10 * exponent
