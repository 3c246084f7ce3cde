"""The CLI prints data as data (issue 15, Why 7 / Must 5).

Payloads, results, errors, hostnames and queue names come from other people:
printed raw, an escape sequence would retitle the terminal, clear it or plant a
link, and rich would read ``[bold red]`` as markup. Every table and line must
show them escaped.
"""

from __future__ import annotations

import json
import re

import psycopg
import pytest

import pgqrs
from test_cli import Cli, run

#: Hostile strings: OSC window title with BEL, clear screen, an OSC-8 link,
#: a C1 CSI (one byte, 0x9b), a bidi override, rich markup.
HOSTILE = [
    "\x1b]0;pwned\x07",
    "\x1b[2J",
    "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "\x9b2J",
    "\u202etxt.exe",
    "[bold red]RED[/bold red]",
]
#: What no output line may contain: C0 controls except newline, DEL, C1, bidi overrides.
_RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def assert_shown_as_data(text: str) -> None:
    assert not _RAW_CONTROL.search(text), repr(text)
    assert "[bold red]RED[/bold red]" in text, text  # markup shown, not applied
    assert "\\x1b]0;pwned\\x07" in text, text  # the escape is visible


@pytest.fixture
def cli(dsn: str, schema: str) -> Cli:
    return Cli(dsn, schema)


def test_printable_escapes_every_control_character() -> None:
    from pgqrs._cli.context import printable

    assert printable("a\x1b[2Jb\x07\x9b\x7f\u202e") == "a\\x1b[2Jb\\x07\\x9b\\x7f\\u202e"
    assert printable("line 1\nline 2", keep_newlines=True) == "line 1\nline 2"
    assert printable("line 1\nline 2") == "line 1\\x0aline 2"
    assert printable("plain ünïcode [x]") == "plain ünïcode [x]"


def _enqueue_hostile(config: pgqrs.Config, queue: str) -> None:
    with pgqrs.Producer(config, queue) as producer:
        for value in HOSTILE:
            producer.enqueue(json.dumps(value))  # a JSON string
        producer.enqueue({"note": HOSTILE[-1]})  # inside an object


def test_peek_prints_payloads_as_data(cli: Cli, config: pgqrs.Config) -> None:
    cli("install")
    cli("queue", "create", "tasks")
    _enqueue_hostile(config, "tasks")
    out = cli("peek", "tasks").stdout
    assert_shown_as_data(out)
    # --json keeps the data exact (JSON escapes the controls itself).
    data = cli.json("peek", "tasks")
    assert [m["payload"] for m in data[: len(HOSTILE)]] == HOSTILE


def test_dequeue_prints_payloads_as_data(cli: Cli, config: pgqrs.Config) -> None:
    cli("install")
    cli("queue", "create", "tasks")
    _enqueue_hostile(config, "tasks")
    assert_shown_as_data(cli("dequeue", "tasks", "--batch", "10").stdout)


def test_archive_list_prints_payloads_results_and_errors_as_data(
    cli: Cli, config: pgqrs.Config
) -> None:
    cli("install")
    cli("queue", "create", "tasks")
    _enqueue_hostile(config, "tasks")
    with pgqrs.Consumer(config, "tasks") as consumer:
        messages = consumer.dequeue(batch=10)
        for msg, value in zip(messages, HOSTILE, strict=False):
            consumer.archive(msg, result={"out": value})
        consumer.archive_batch(messages[len(HOSTILE) :], "failed", errors=[HOSTILE[0]])
    out = cli("archive", "list").stdout
    assert_shown_as_data(out)


def test_worker_list_prints_hostnames_as_data(
    cli: Cli, schema: str, sql: psycopg.Connection[tuple[object, ...]]
) -> None:
    """A hostname is whatever the worker's machine reports: anyone's text."""
    cli("install")
    for value in HOSTILE:
        sql.execute(
            f'INSERT INTO "{schema}".workers (hostname, pid, queues) VALUES (%s, 1, %s)',
            [value, ["tasks"]],
        )
    assert_shown_as_data(cli("worker", "list").stdout)


def test_queue_list_and_notes_print_names_as_data(cli: Cli) -> None:
    """Queue names are constrained (CHECK), but the lines around them go through the
    same escaping; an invalid name echoed in an error line is escaped too."""
    cli("install")
    cli("queue", "create", "tasks")
    assert "tasks" in cli("queue", "list").stdout
    proc = cli("queue", "create", "\x1b]0;pwned\x07[bold]x", code=2)
    assert not _RAW_CONTROL.search(proc.stderr), repr(proc.stderr)


def test_error_lines_escape_control_characters(cli: Cli) -> None:
    """An error message quoting user input (here an invalid JSON document) is one
    line with the controls shown, also in a line break inside the input."""
    cli("install")
    cli("queue", "create", "tasks")
    proc = cli("enqueue", "tasks", "\x1b]0;pwned\x07\n\x9b", code=2)
    assert not _RAW_CONTROL.search(proc.stderr), repr(proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_hostile_dsn_host_is_escaped_in_the_error_line() -> None:
    """Connection errors quote the host: one from the environment may be anyone's text."""
    proc = run(
        "--dsn",
        "host='\x1b]0;pwned\x07' connect_timeout=1",
        "queue",
        "list",
        code=5,
    )
    assert not _RAW_CONTROL.search(proc.stderr), repr(proc.stderr)
