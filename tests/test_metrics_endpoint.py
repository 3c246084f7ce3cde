"""Queue health for Prometheus: scraped over HTTP by a real client, parsed with
prometheus_client's own parser (so label escaping is checked end to end)."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

import pgqrs
from pgqrs._cli import app as cli_app
from pgqrs._cli import exit_codes
from pgqrs.prometheus import QueueHealthCollector, make_server

Conn = psycopg.Connection[tuple[Any, ...]]

#: Valid queue names with every punctuation a name may hold.
ODD_VALID = "orders.eu:high-prio_2"
#: Not a valid queue name (the schema's check refuses it): what needs escaping
#: in the text format (quote, backslash, newline), and UTF-8.
HOSTILE = 'we"ird\\name\nnext é'


@contextlib.contextmanager
def serving(collector: QueueHealthCollector, **auth: Any) -> Iterator[str]:
    server = make_server(collector, "127.0.0.1", 0, **auth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        collector.close()
        thread.join(5)


def scrape(
    url: str, headers: dict[str, str] | None = None
) -> dict[tuple[str, tuple[Any, ...]], float]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        text = response.read().decode("utf-8")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_scrape_reports_every_state_with_odd_queue_names(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    admin.create_queue(ODD_VALID)
    admin.create_queue("idle")
    with pgqrs.Producer(config, ODD_VALID) as producer:
        producer.enqueue_batch([1, 2, 3])
        producer.enqueue(4, delay=3600)
        producer.enqueue_batch([5, 6])
    with pgqrs.Consumer(config, ODD_VALID) as consumer:
        first, second = consumer.dequeue(batch=2)
        consumer.archive(first)
        consumer.archive(second, status="dead")
        consumer.dequeue()  # in flight
    # The schema refuses such a name; drop the check in this throwaway schema so
    # the exporter's escaping meets the worst a label can hold.
    sql.execute(f'ALTER TABLE "{schema}".queues DROP CONSTRAINT queues_name_valid')
    sql.execute(f'INSERT INTO "{schema}".queues (name) VALUES (%s)', [HOSTILE])
    sql.execute(
        f'INSERT INTO "{schema}".messages (queue, payload, enqueued_at) '
        "VALUES (%s, '1', now() - interval '90 seconds')",
        [HOSTILE],
    )
    sql.execute(
        f'INSERT INTO "{schema}".workers (hostname, pid, queues) VALUES '
        "('h', 1, ARRAY[%s, %s]), ('h', 2, ARRAY[%s])",
        [ODD_VALID, HOSTILE, ODD_VALID],
    )
    sql.execute(
        f"UPDATE \"{schema}\".workers SET heartbeat_at = now() - interval '1 hour' WHERE pid = 2"
    )

    with serving(QueueHealthCollector(config)) as url:
        s = scrape(url)
    assert value(s, "pgqrs_scrape_error") == 0
    q = {"queue": ODD_VALID}
    assert value(s, "pgqrs_queue_messages", state="ready", **q) == 2
    assert value(s, "pgqrs_queue_messages", state="delayed", **q) == 1
    assert value(s, "pgqrs_queue_messages", state="in_flight", **q) == 1
    assert value(s, "pgqrs_queue_estimated", **q) == 0
    assert value(s, "pgqrs_queue_archived", status="completed", **q) == 1
    assert value(s, "pgqrs_queue_archived", status="dead", **q) == 1
    assert value(s, "pgqrs_queue_workers", state="alive", **q) == 1
    assert value(s, "pgqrs_queue_workers", state="stale", **q) == 1
    assert value(s, "pgqrs_queue_paused", **q) == 0
    assert 0 <= value(s, "pgqrs_queue_last_heartbeat_age_seconds", **q) < 60
    h = {"queue": HOSTILE}
    assert value(s, "pgqrs_queue_messages", state="ready", **h) == 1
    assert 90 <= value(s, "pgqrs_queue_oldest_ready_age_seconds", **h) < 200
    assert value(s, "pgqrs_queue_workers", state="alive", **h) == 1
    assert value(s, "pgqrs_queue_oldest_ready_age_seconds", queue="idle") == 0
    assert value(s, "pgqrs_queue_workers", state="alive", queue="idle") == 0
    assert ("pgqrs_queue_last_heartbeat_age_seconds", (("queue", "idle"),)) not in s
    assert value(s, "pgqrs_scrape_duration_seconds") > 0


def test_a_queue_above_the_sample_is_estimated(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    admin.create_queue("big")
    admin.create_queue("small")
    with pgqrs.Producer(config, "big") as producer:
        producer.enqueue_batch(list(range(400)))
    with pgqrs.Producer(config, "small") as producer:
        producer.enqueue_batch(list(range(10)))
    sql.execute(f'ANALYZE "{schema}".messages')
    with serving(QueueHealthCollector(config, sample=50)) as url:
        s = scrape(url)
    assert value(s, "pgqrs_queue_estimated", queue="big") == 1
    assert 300 <= value(s, "pgqrs_queue_messages", queue="big", state="ready") <= 500
    assert value(s, "pgqrs_queue_estimated", queue="small") == 0
    assert value(s, "pgqrs_queue_messages", queue="small", state="ready") == 10


def test_an_unreachable_database_is_a_scrape_error_not_a_crash() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = pgqrs.Config(dsn=f"postgresql://nobody@127.0.0.1:{port}/none", connect_timeout=1)
    with serving(QueueHealthCollector(config)) as url:
        for _ in range(2):  # and the server keeps serving
            s = scrape(url)
            assert value(s, "pgqrs_scrape_error") == 1
            assert not any(name.startswith("pgqrs_queue_") for name, _ in s)


def test_credentials_guard_the_endpoint(admin: pgqrs.Admin, config: pgqrs.Config) -> None:
    with serving(QueueHealthCollector(config), token="s3cret", basic_auth="prom:pw") as url:
        with pytest.raises(urllib.error.HTTPError) as denied:
            scrape(url)
        assert denied.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            scrape(url, {"Authorization": "Bearer wrong"})
        assert value(scrape(url, {"Authorization": "Bearer s3cret"}), "pgqrs_scrape_error") == 0
        basic = "Basic " + base64.b64encode(b"prom:pw").decode()
        assert value(scrape(url, {"Authorization": basic}), "pgqrs_scrape_error") == 0


def test_serving_beyond_loopback_needs_credentials(
    config: pgqrs.Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(pgqrs.InvalidArgument, match="PGQRS_METRICS_TOKEN"):
        make_server(QueueHealthCollector(config), "0.0.0.0", 0)
    monkeypatch.delenv("PGQRS_METRICS_TOKEN", raising=False)
    monkeypatch.delenv("PGQRS_METRICS_BASIC_AUTH", raising=False)
    code = cli_app.run(["--dsn", config.dsn, "metrics", "serve", "--host", "0.0.0.0"])
    assert code == exit_codes.USAGE
    assert "refusing to serve metrics on '0.0.0.0' without credentials" in capsys.readouterr().err


def test_bad_collector_options_name_the_value(config: pgqrs.Config) -> None:
    with pytest.raises(pgqrs.InvalidArgument, match="sample must be an int >= 1, got 0"):
        QueueHealthCollector(config, sample=0)
    with pytest.raises(pgqrs.InvalidArgument, match="timeout must be"):
        QueueHealthCollector(config, timeout=-1)
