"""The dashboard in a real headless browser (Debian's chromium + chromedriver, via
Selenium): pages load and link to each other, actions work end to end, hostile
data renders as text and runs no script, the page's own script runs under the CSP.

scripts/test installs chromium and chromium-driver; without them these tests
skip, unless PGQRS_TEST_REQUIRE_BROWSER=1 (set by scripts/test) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import pgqrs
from _dashboard_server import serving
from pgqrs._dashboard import create_app

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

HOSTILE_SCRIPT = "<script>window.__xss = 'payload'</script>"
HOSTILE_IMG = '"><img src=x onerror="window.__xss = \'header\'">'
HOSTILE_SVG = "<svg onload=\"window.__xss = 'error'\"></svg>"


def _chrome_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    paths = _chrome_paths()
    if paths is None:
        if os.environ.get("PGQRS_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(
                "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
            )
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    options = Options()
    options.binary_location = paths[0]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site(config: pgqrs.Config, admin: pgqrs.Admin, browser: WebDriver) -> Iterator[str]:
    with serving(create_app(config)) as url:
        yield url
    browser.delete_all_cookies()


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (NoSuchElementException, StaleElementReferenceException, AssertionError):
            # (a live refresh may swap the element between finding and reading it)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        time.sleep(0.1)


def console_errors(browser: WebDriver) -> list[str]:
    """Console errors (a CSP violation by an inline script would be one)."""
    return [
        e["message"]
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]


def text(browser: WebDriver, css: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def make_dead(config: pgqrs.Config, queue: str, payload: Any) -> int:
    """A message that died the real way: delivered max_attempts times, then dead-lettered."""
    with pgqrs.Producer(config, queue) as p:
        message_id = p.enqueue(payload).id
    with pgqrs.Consumer(config, queue) as c:
        m = c.dequeue()
        assert m is not None and m.id == message_id
        c.release(
            m,
            error={
                "type": "ValueError",
                "message": "bad input",
                "traceback": "Traceback (most recent call last):\nValueError: bad input",
            },
        )
        assert c.dequeue() is None  # attempts exhausted: archived as dead
    return message_id


def test_pages_load_and_link_to_each_other(
    site: str, browser: WebDriver, config: pgqrs.Config, admin: pgqrs.Admin, sql: Any
) -> None:
    admin.create_queue("emails", max_attempts=1)
    dead_id = make_dead(config, "emails", {"to": "broken"})
    with pgqrs.Producer(config, "emails") as p:
        ids = [m.id for m in p.enqueue_batch([{"to": f"u{i}@example.com"} for i in range(3)])]
    sql.execute(
        f'INSERT INTO "{config.schema}".workers (hostname, pid, queues) VALUES (%s, %s, %s)',
        ["worker-host-1", 4242, ["emails"]],
    )
    browser.get(site + "/")
    assert browser.title == "Queues · pgqrs"
    row = wait_for(lambda: browser.find_element(By.LINK_TEXT, "emails"))
    assert "3" in text(browser, "#queues tbody tr")
    row.click()
    wait_for(lambda: browser.title == "emails · pgqrs")
    assert browser.find_element(By.CSS_SELECTOR, "svg.chart polyline")
    listed = [
        e.text for e in browser.find_elements(By.CSS_SELECTOR, "#messages tbody td:first-child a")
    ]
    assert listed == [str(i) for i in ids]
    browser.find_element(By.LINK_TEXT, str(ids[0])).click()
    wait_for(lambda: browser.title == f"Message {ids[0]} · pgqrs")
    assert '"to": "u0@example.com"' in text(browser, "#payload")
    browser.find_element(By.LINK_TEXT, "Archive").click()
    wait_for(lambda: browser.title == "Archive · pgqrs")
    browser.find_element(By.LINK_TEXT, str(dead_id)).click()
    wait_for(lambda: "bad input" in text(browser, ".errorcard"))
    assert "ValueError" in text(browser, ".errorcard")
    browser.find_element(By.LINK_TEXT, "Workers").click()
    wait_for(lambda: "worker-host-1" in text(browser, "#workers"))
    assert "4242" in text(browser, "#workers")
    browser.find_element(By.LINK_TEXT, "Queues").click()
    wait_for(lambda: browser.title == "Queues · pgqrs")
    assert console_errors(browser) == []


def test_hostile_data_renders_as_text_and_runs_no_script(
    site: str, browser: WebDriver, config: pgqrs.Config, admin: pgqrs.Admin, sql: Any
) -> None:
    admin.create_queue("q", max_attempts=1)
    with pgqrs.Producer(config, "q") as p:
        waiting = p.enqueue({"html": HOSTILE_SCRIPT}, headers={"x": HOSTILE_IMG}).id
    with pgqrs.Producer(config, "q") as p:
        message_id = p.enqueue({"s": HOSTILE_SCRIPT}).id
    with pgqrs.Consumer(config, "q") as c:
        for m in c.dequeue(batch=10):
            if m.id == message_id:
                c.release(
                    m,
                    error={
                        "type": HOSTILE_SVG,
                        "message": HOSTILE_IMG,
                        "traceback": HOSTILE_SCRIPT,
                    },
                )
            else:
                c.release(m)
        c.dequeue(batch=10)  # both exhausted: dead
    sql.execute(
        f'INSERT INTO "{config.schema}".workers (hostname, pid, queues) VALUES (%s, %s, %s)',
        [HOSTILE_IMG, 1, ["q"]],
    )
    pages = [
        "/",
        "/queues/q",
        f"/messages/{waiting}",
        f"/messages/{message_id}",
        "/archive",
        "/archive?queue=q&status=dead",
        "/workers",
    ]
    for path in pages:
        browser.get(site + path)
        time.sleep(0.2)
        assert browser.execute_script("return window.__xss") is None, path
        assert browser.execute_script("return document.querySelectorAll('img').length") == 0, path
        assert not browser.find_elements(By.CSS_SELECTOR, "main script, main svg[onload]"), path
    browser.get(site + f"/messages/{message_id}")
    assert HOSTILE_SCRIPT in text(browser, ".errorcard .traceback")
    assert HOSTILE_IMG in text(browser, ".errorcard")  # the dead letter's last error
    assert HOSTILE_SVG in text(browser, ".errorcard")
    assert "window.__xss = 'payload'" in text(browser, "#payload")
    browser.get(site + "/workers")
    assert HOSTILE_IMG in text(browser, "#workers")
    browser.get(site + "/archive?queue=q")
    assert HOSTILE_SCRIPT in text(browser, "#archive")
    assert browser.execute_script("return window.__xss") is None


def test_redrive_a_dead_message_and_see_it_back_in_the_queue(
    site: str, browser: WebDriver, config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    admin.create_queue("work", max_attempts=1)
    dead_id = make_dead(config, "work", {"job": "retry me"})
    browser.get(site + "/archive?queue=work&status=dead")
    browser.find_element(By.LINK_TEXT, str(dead_id)).click()
    wait_for(lambda: browser.find_element(By.ID, "redrive")).click()
    wait_for(lambda: "back on queue work" in text(browser, ".flash"))
    assert text(browser, "h1 .state") == "ready"
    browser.find_element(By.LINK_TEXT, "work").click()
    wait_for(lambda: str(dead_id) in text(browser, "#messages"))
    assert admin.peek("work")[0][0].id == dead_id
    assert admin.list_archive("work") == []


def test_redrive_a_selection_and_all(
    site: str, browser: WebDriver, config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    admin.create_queue("work", max_attempts=1)
    dead = [make_dead(config, "work", {"n": i}) for i in range(4)]
    browser.get(site + "/archive?queue=work&status=dead")
    for message_id in dead[:2]:
        browser.find_element(By.CSS_SELECTOR, f"input[name=id][value='{message_id}']").click()
    browser.find_element(By.ID, "redrive-selected").click()
    wait_for(lambda: "Redrove 2 of 2" in text(browser, ".flash"))
    assert sorted(m.id for m, _ in admin.peek("work")) == dead[:2]
    browser.find_element(By.ID, "redrive-all").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: "Redrove 2 dead message(s) to queue work" in text(browser, ".flash"))
    assert sorted(m.id for m, _ in admin.peek("work")) == dead


def test_pause_and_resume_a_queue(site: str, browser: WebDriver, admin: pgqrs.Admin) -> None:
    admin.create_queue("work")
    browser.get(site + "/queues/work")
    browser.find_element(By.ID, "pause").click()
    wait_for(lambda: "Queue work paused" in text(browser, ".flash"))
    assert text(browser, "h1 .badge") == "PAUSED"
    assert admin.get_queue("work").paused
    browser.get(site + "/")
    assert "PAUSED" in text(browser, "#queues")
    browser.get(site + "/queues/work")
    browser.find_element(By.ID, "resume").click()
    wait_for(lambda: "resumed" in text(browser, ".flash"))
    assert not admin.get_queue("work").paused


def test_schedules_page_shows_next_and_last_slot_and_paused(
    site: str, browser: WebDriver, admin: pgqrs.Admin
) -> None:
    browser.get(site + "/schedules")
    assert "No schedules" in text(browser, "main")
    admin.create_queue("work")
    admin.create_schedule(
        "nightly", queue="work", payload=1, cron="30 2 * * *", time_zone="Europe/Berlin"
    )
    admin.create_schedule("tick", queue="work", payload=1, interval=60)
    admin.pause_schedule("tick")
    browser.get(site + "/schedules")
    row = text(browser, "#schedule-nightly")
    assert "30 2 * * *" in row and "Europe/Berlin" in row and "ACTIVE" in row
    assert "not planned yet" in row and "never" in row
    assert "every 60s" in text(browser, "#schedule-tick") and "PAUSED" in text(
        browser, "#schedule-tick"
    )
    browser.find_element(By.CSS_SELECTOR, "#schedule-nightly a.chip").click()
    wait_for(lambda: browser.current_url.endswith("/queues/work"))


def test_retry_now_and_delete_a_message(
    site: str, browser: WebDriver, config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    admin.create_queue("work")
    with pgqrs.Producer(config, "work") as p:
        later = p.enqueue({"when": "later"}, delay=3600).id
        other = p.enqueue({"when": "now"}).id
    browser.get(site + f"/messages/{later}")
    assert text(browser, "h1 .state") == "delayed"
    browser.find_element(By.ID, "retry").click()
    wait_for(lambda: "is ready now" in text(browser, ".flash"))
    assert text(browser, "h1 .state") == "ready"
    assert {m.id: s for m, s in admin.peek("work")}[later] == "ready"
    assert not browser.find_elements(By.ID, "retry")  # nothing to retry when ready
    browser.get(site + f"/messages/{other}")
    browser.find_element(By.ID, "delete").click()
    browser.switch_to.alert.dismiss()  # the confirmation: cancelling keeps it
    assert other in [m.id for m, _ in admin.peek("work")]
    browser.find_element(By.ID, "delete").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: f"Message {other} deleted" in text(browser, ".flash"))
    assert browser.title == "work · pgqrs"
    assert [m.id for m, _ in admin.peek("work")] == [later]


def test_cancel_a_waiting_and_a_running_message_and_show_progress(
    site: str, browser: WebDriver, config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    admin.create_queue("work")
    with pgqrs.Producer(config, "work") as p:
        waiting = p.enqueue({"n": 1}, delay=3600).id
        running = p.enqueue({"n": 2}).id
    browser.get(site + f"/messages/{waiting}")
    browser.find_element(By.ID, "cancel").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: f"Message {waiting} cancelled" in text(browser, ".flash"))
    assert text(browser, "h1 .state") == "cancelled"
    assert not browser.find_elements(By.ID, "cancel")  # archived: nothing to cancel
    with pgqrs.Consumer(config, "work") as c:
        msg = c.dequeue()
        assert msg is not None and msg.id == running
        c.set_progress(msg, {"done": 3, "of": 10})
        browser.get(site + f"/messages/{running}")
        assert '"done": 3' in text(browser, "#progress")
        browser.find_element(By.ID, "cancel").click()
        browser.switch_to.alert.accept()
        wait_for(lambda: "requested" in text(browser, ".flash"))
        assert "requested at" in text(browser, "#cancel-requested")
        assert not browser.find_elements(By.ID, "cancel")
        c.archive(msg)
    assert [m.status for m in admin.list_archive("work", limit=5)] == ["cancelled", "cancelled"]


def test_purge_asks_for_the_queue_name(
    site: str, browser: WebDriver, config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    admin.create_queue("work")
    with pgqrs.Producer(config, "work") as p:
        p.enqueue_batch([{"n": i} for i in range(5)])
    browser.get(site + "/queues/work")
    browser.find_element(By.NAME, "confirm").send_keys("work")
    browser.find_element(By.ID, "purge").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: "5 message(s) deleted" in text(browser, ".flash"))
    assert admin.queue_stats("work").ready == 0


def test_the_queues_page_refreshes_itself(
    site: str, browser: WebDriver, config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    admin.create_queue("live")
    browser.get(site + "/")
    wait_for(lambda: text(browser, "#queues tbody tr td:nth-child(2)") == "0")
    with pgqrs.Producer(config, "live") as p:
        p.enqueue_batch([{"n": i} for i in range(7)])
    marker = browser.execute_script("window.__notReloaded = true; return 1")
    assert marker == 1
    wait_for(lambda: text(browser, "#queues tbody tr td:nth-child(2)") == "7", timeout=15)
    assert browser.execute_script("return window.__notReloaded") is True  # swapped, not reloaded
    assert console_errors(browser) == []


def test_message_pages_paginate(
    site: str, browser: WebDriver, config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    admin.create_queue("many")
    with pgqrs.Producer(config, "many") as p:
        ids = [m.id for m in p.enqueue_batch([{"n": i} for i in range(60)])]
        urgent = p.enqueue({"urgent": True}, priority=5).id
    browser.get(site + "/queues/many")
    first = [
        int(e.text)
        for e in browser.find_elements(By.CSS_SELECTOR, "#messages tbody td:first-child a")
    ]
    assert first == [urgent, *ids[:49]]
    browser.find_element(By.ID, "next").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#messages tbody tr"))
    second = [
        int(e.text)
        for e in browser.find_elements(By.CSS_SELECTOR, "#messages tbody td:first-child a")
    ]
    assert second == ids[49:]
    assert not browser.find_elements(By.ID, "next")


def test_dsn_of_config_is_not_shown(site: str, browser: WebDriver, dsn: str) -> None:
    browser.get(site + "/")
    assert dsn not in browser.page_source
    psycopg.conninfo.conninfo_to_dict(dsn)  # (the DSN is valid: the check above means something)
