"""The dashboard's safety at the HTTP level: credentials, CSRF, read-only, headers,
least-privileged roles, the CLI's refusal to expose it, mounting in another app.

The browser tests (tests/test_dashboard_browser.py) cover what a person sees.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator

import httpx
import psycopg
import psycopg.conninfo
import pytest
from psycopg import sql as pgsql
from starlette.applications import Starlette
from starlette.routing import Mount

import pgqrs
from _dashboard_server import serving
from pgqrs._cli.app import run as cli_run
from pgqrs._dashboard import create_app

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(client: httpx.Client, url: str) -> str:
    """Load a page like a browser would; return the CSRF token of its forms."""
    page = client.get(url)
    assert page.status_code == 200, page.text
    found = CSRF_FIELD.search(page.text)
    assert found, "no form on " + url
    return found[1]


@pytest.fixture
def seeded(admin: pgqrs.Admin, config: pgqrs.Config) -> pgqrs.Config:
    admin.create_queue("jobs")
    with pgqrs.Producer(config, "jobs") as p:
        p.enqueue_batch([{"n": i} for i in range(3)])
    return config


@pytest.fixture
def open_dashboard(seeded: pgqrs.Config) -> Iterator[str]:
    with serving(create_app(seeded)) as url:
        yield url


def test_an_action_without_csrf_token_is_refused(open_dashboard: str, admin: pgqrs.Admin) -> None:
    with httpx.Client(base_url=open_dashboard) as client:
        token = csrf_of(client, "/queues/jobs")
        no_token = client.post("/queues/jobs/pause")
        assert no_token.status_code == 403 and "CSRF" in no_token.text
        wrong = client.post("/queues/jobs/pause", data={"csrf": token[:-2] + "xx"})
        assert wrong.status_code == 403
        assert admin.get_queue("jobs").paused is False
        ok = client.post("/queues/jobs/pause", data={"csrf": token})
        assert ok.status_code == 303 and ok.headers["location"] == "/queues/jobs"
        assert admin.get_queue("jobs").paused is True


def test_a_form_posted_from_another_site_is_refused(
    open_dashboard: str, admin: pgqrs.Admin
) -> None:
    """The token alone is not enough: a cross-site Origin is refused too."""
    with httpx.Client(base_url=open_dashboard) as client:
        token = csrf_of(client, "/queues/jobs")
        evil = client.post(
            "/queues/jobs/pause", data={"csrf": token}, headers={"Origin": "https://evil.example"}
        )
        assert evil.status_code == 403 and "cross-site" in evil.text
        assert admin.get_queue("jobs").paused is False


def test_another_browsers_cookie_does_not_validate_a_token(open_dashboard: str) -> None:
    with httpx.Client(base_url=open_dashboard) as a, httpx.Client(base_url=open_dashboard) as b:
        token_a = csrf_of(a, "/queues/jobs")
        csrf_of(b, "/queues/jobs")
        assert b.post("/queues/jobs/pause", data={"csrf": token_a}).status_code == 403


def test_purge_needs_the_queue_name_typed(open_dashboard: str, admin: pgqrs.Admin) -> None:
    with httpx.Client(base_url=open_dashboard) as client:
        token = csrf_of(client, "/queues/jobs")
        refused = client.post("/queues/jobs/purge", data={"csrf": token, "confirm": "job"})
        assert refused.status_code == 400 and "type the queue" in refused.text
        assert admin.queue_stats("jobs").ready == 3
        done = client.post("/queues/jobs/purge", data={"csrf": token, "confirm": "jobs"})
        assert done.status_code == 303
        assert admin.queue_stats("jobs").ready == 0


def test_security_headers_and_cookie_flags(open_dashboard: str) -> None:
    with httpx.Client(base_url=open_dashboard) as client:
        page = client.get("/")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "<script>" not in page.text.replace('<script src="/static/dashboard.js"', "")
        script = client.get("/static/dashboard.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]


def test_token_protects_every_page_and_action(seeded: pgqrs.Config) -> None:
    token = "s3cret-token-for-tests"
    with serving(create_app(seeded, token=token)) as url, httpx.Client(base_url=url) as client:
        assert client.get("/", headers={"Accept": "application/json"}).status_code == 401
        to_login = client.get("/queues/jobs", headers={"Accept": "text/html"})
        assert to_login.status_code == 303
        assert to_login.headers["location"] == "/login?next=%2Fqueues%2Fjobs"
        assert client.post("/queues/jobs/pause").status_code == 401
        assert client.get("/workers").status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get("/", headers=bearer).status_code == 200
        assert client.get("/", headers={"Authorization": "Bearer nope-nope"}).status_code == 401
        # The login form: a wrong token is refused, the right one sets the session cookie.
        login_csrf = csrf_of(client, "/login")
        bad = client.post("/login", data={"csrf": login_csrf, "token": "wrong-token"})
        assert bad.status_code == 401
        good = client.post("/login?next=/queues/jobs", data={"csrf": login_csrf, "token": token})
        assert good.status_code == 303 and good.headers["location"] == "/queues/jobs"
        assert token not in good.headers["set-cookie"]
        assert client.get("/queues/jobs").status_code == 200
        # An open redirect through ?next= is not possible.
        away = client.post("/login?next=//evil.example/", data={"csrf": login_csrf, "token": token})
        assert away.headers["location"] == "/"


def test_basic_auth(seeded: pgqrs.Config) -> None:
    app = create_app(seeded, basic_auth=("ops", "correct horse"))
    with serving(app) as url, httpx.Client(base_url=url) as client:
        refused = client.get("/")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic ")
        assert client.get("/", auth=("ops", "wrong")).status_code == 401
        assert client.get("/", auth=("ops", "correct horse")).status_code == 200
        garbage = {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode()}
        assert client.get("/", headers=garbage).status_code == 401
        assert client.post("/queues/jobs/pause").status_code == 401


def test_read_only_offers_no_action_and_refuses_posts(
    seeded: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    with serving(create_app(seeded, read_only=True)) as url, httpx.Client(base_url=url) as c:
        message_id = admin.peek("jobs")[0][0].id
        pages = (
            "/",
            "/queues/jobs",
            f"/messages/{message_id}",
            "/archive",
            "/workers",
            "/schedules",
        )
        for path in pages:
            page = c.get(path)
            assert page.status_code == 200, path
            assert 'method="post"' not in page.text, path
            assert "read-only" in page.text
        token = c.cookies["pgqrs_csrf"]
        refused = c.post("/queues/jobs/pause", data={"csrf": token})
        assert refused.status_code == 403 and "read-only" in refused.text
        assert admin.get_queue("jobs").paused is False


@pytest.fixture
def login_role(server_dsn: str) -> Iterator[str]:
    name = f"pgqrs_dash_{os.getpid()}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE ROLE {} LOGIN").format(pgsql.Identifier(name)))
    yield name
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP OWNED BY {}").format(pgsql.Identifier(name)))
        conn.execute(pgsql.SQL("DROP ROLE {}").format(pgsql.Identifier(name)))


@pytest.mark.direct_only
def test_read_only_works_with_the_read_only_grant(
    seeded: pgqrs.Config, admin: pgqrs.Admin, login_role: str, server_dsn: str
) -> None:
    """Every page runs under `grant --read-only`: the dashboard reads only
    through its server functions, and the role has no table privilege."""
    admin.grant(login_role, read_only=True)
    with pgqrs.Consumer(seeded, "jobs") as consumer:
        done = consumer.dequeue()
        assert done is not None
        consumer.archive(done, "dead")
    role_config = pgqrs.Config.from_dsn(
        psycopg.conninfo.make_conninfo(server_dsn, user=login_role),
        schema=seeded.schema,
        pool_max_size=2,
    )
    app = create_app(role_config, read_only=True)
    with serving(app) as url, httpx.Client(base_url=url) as client:
        for path in (
            "/",
            "/queues/jobs",
            "/queues/jobs?window=day",
            "/queues/jobs?state=ready",
            f"/messages/{done.id}",
            "/archive",
            "/archive?queue=jobs&status=dead",
            "/workers",
            "/schedules",
        ):
            page = client.get(path)
            assert page.status_code == 200, (path, page.text)


@pytest.mark.direct_only
def test_actions_need_the_admin_grant(
    seeded: pgqrs.Config, admin: pgqrs.Admin, login_role: str, server_dsn: str
) -> None:
    role_config = pgqrs.Config.from_dsn(
        psycopg.conninfo.make_conninfo(server_dsn, user=login_role),
        schema=seeded.schema,
        pool_max_size=2,
    )
    admin.grant(login_role, read_only=True)
    with serving(create_app(role_config)) as url, httpx.Client(base_url=url) as client:
        token = csrf_of(client, "/queues/jobs")
        denied = client.post("/queues/jobs/pause", data={"csrf": token})
        assert denied.status_code == 403 and "permission denied" in denied.text
        assert admin.get_queue("jobs").paused is False
        first = admin.peek("jobs", 1)[0][0].id
        denied = client.post(f"/messages/{first}/delete", data={"csrf": token})
        assert denied.status_code == 403 and "permission denied" in denied.text
        assert admin.queue_stats("jobs").ready == 3
        admin.grant(login_role, admin=True)
        assert client.post("/queues/jobs/pause", data={"csrf": token}).status_code == 303
        assert admin.get_queue("jobs").paused is True
        assert client.post(f"/messages/{first}/delete", data={"csrf": token}).status_code == 303
        assert admin.queue_stats("jobs").ready == 2


def test_mounted_under_a_prefix_in_another_app(seeded: pgqrs.Config) -> None:
    parent = Starlette(routes=[Mount("/ops/queues", app=create_app(seeded))])
    with serving(parent) as url, httpx.Client(base_url=url) as client:
        page = client.get("/ops/queues/")
        assert page.status_code == 200
        assert 'href="/ops/queues/queues/jobs"' in page.text
        assert 'src="/ops/queues/static/dashboard.js"' in page.text
        assert client.get("/ops/queues/static/dashboard.css").status_code == 200
        token = csrf_of(client, "/ops/queues/queues/jobs")
        done = client.post("/ops/queues/queues/jobs/pause", data={"csrf": token})
        assert done.status_code == 303 and done.headers["location"] == "/ops/queues/queues/jobs"


def test_create_app_rejects_bad_settings(config: pgqrs.Config) -> None:
    with pytest.raises(pgqrs.ConfigError, match=r"pgqrs\.Config"):
        create_app("postgresql://x")  # type: ignore[arg-type]
    with pytest.raises(pgqrs.ConfigError, match="at least 8"):
        create_app(config, token="short")
    with pytest.raises(pgqrs.ConfigError, match="not both"):
        create_app(config, token="long-enough-token", basic_auth=("a", "b"))
    with pytest.raises(pgqrs.ConfigError, match="user, password"):
        create_app(config, basic_auth=("a:b", "c"))


def test_bad_input_is_a_clear_400(open_dashboard: str) -> None:
    with httpx.Client(base_url=open_dashboard) as client:
        for path, words in (
            ("/queues/bad%20name", "invalid queue name"),
            ("/queues/jobs?state=sideways", "unknown state"),
            ("/queues/jobs?window=week", "unknown chart window"),
            ("/queues/jobs?after=x", "bad page key"),
            ("/archive?status=Dead!", "unknown archive status"),
            ("/archive?since=yesterday", "bad since time"),
        ):
            page = client.get(path)
            assert page.status_code == 400 and words in page.text, (path, page.text[-400:])
        assert client.get("/queues/nosuch").status_code == 404
        assert client.get("/messages/987654").status_code == 404


def test_cli_refuses_a_public_address_without_credentials(
    dsn: str, schema: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGQRS_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("PGQRS_DASHBOARD_BASIC_AUTH", raising=False)
    base = ["--dsn", dsn, "--schema", schema, "dashboard"]
    assert cli_run([*base, "--host", "0.0.0.0"]) == 2
    assert "refusing to serve the dashboard on 0.0.0.0 without credentials" in (
        capsys.readouterr().err
    )
    assert cli_run([*base, "--host", "::", "--basic-auth", "nopassword"]) == 2
    assert "USER:PASSWORD" in capsys.readouterr().err
    assert cli_run([*base, "--token", "short"]) == 2
    assert "at least 8" in capsys.readouterr().err
    monkeypatch.setenv("PGQRS_DASHBOARD_TOKEN", "x" * 12)
    monkeypatch.setenv("PGQRS_DASHBOARD_BASIC_AUTH", "a:b")
    assert cli_run([*base, "--host", "0.0.0.0"]) == 2
    assert "not both" in capsys.readouterr().err


def test_cli_loopback_detection() -> None:
    from pgqrs._cli.dashboard_cmd import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("127.1.2.3") and is_loopback("::1")
    assert is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")


def test_the_public_module_exports_create_app() -> None:
    """``pgqrs.dashboard`` is the documented import (a subprocess: importing it here
    would add the submodule to ``dir(pgqrs)``, which tests/test_public_api.py checks)."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pgqrs.dashboard as d, pgqrs._dashboard.app as a; "
            "assert d.create_app is a.create_app and d.__all__ == ['create_app']",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_limits_show_in_the_clis_words(open_dashboard: str, admin: pgqrs.Admin) -> None:
    """Flow-control limits and the archive retention on the queues and queue
    pages, as `pgqrs queue list` words them; a queue without any shows "-"."""
    admin.create_queue(
        "limited",
        concurrency_limit=8,
        group_concurrency=1,
        rate_limit="100/s",
        archive_retention=7 * 86400,
    )
    with httpx.Client(base_url=open_dashboard) as client:
        listing = client.get("/").text
        assert "concurrency 8, per group 1, rate 100/s" in listing
        assert "7d 0h" in listing
        assert "concurrency 8, per group 1, rate 100/s" in client.get("/queues/limited").text
        admin.update_queue("limited", concurrency_limit=None, group_concurrency=None)
        assert ">rate 100/s<" in client.get("/queues/limited").text.replace("\n", "")
