"""The ``pgqrs`` command through its real entry point, in a subprocess, on the session server.

Every test uses a fresh schema (``--schema``) and turns the embedded default
off, so nothing here can start or touch a local server by accident.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgqrs
from pgqrs._sql import functions, migrations

PGQRS = Path(sys.executable).with_name("pgqrs")


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PGQRS_") and k != "DATABASE_URL"
    }
    env.update(PGQRS_EMBEDDED="0", COLUMNS="200", **extra)
    return env


def run(
    *args: str,
    code: int = 0,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``pgqrs ARGS`` and check its exit code."""
    proc = subprocess.run(
        [str(PGQRS), *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=60,
    )
    assert proc.returncode == code, (
        f"pgqrs {' '.join(args)}: exit {proc.returncode}, wanted {code}\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    return proc


class Cli:
    """``pgqrs --dsn DSN --schema SCHEMA ...`` for one test."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.prefix = ["--dsn", dsn, "--schema", schema]

    def __call__(
        self, *args: str, code: int = 0, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run(*self.prefix, *args, code=code, stdin=stdin)

    def json(self, *args: str, code: int = 0, stdin: str | None = None) -> Any:
        return json.loads(self("--json", *args, code=code, stdin=stdin).stdout)

    def error(self, *args: str, code: int) -> str:
        """Run a failing command; return its one stderr line (checked: one line, no traceback)."""
        proc = self(*args, code=code)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("pgqrs: error: "), proc.stderr
        assert "Traceback" not in proc.stderr
        return lines[0]


@pytest.fixture
def cli(dsn: str, schema: str) -> Cli:
    return Cli(dsn, schema)


@pytest.fixture
def installed(cli: Cli) -> Cli:
    cli("install")
    return cli


def test_install_verify_uninstall(cli: Cli, schema: str) -> None:
    assert "not installed" in cli("verify", code=4).stdout
    assert "applied 0001_init" in cli("install").stdout
    assert "already up to date" in cli("install").stdout
    report = cli.json("verify")
    assert report["ok"] is True and report["report"]["current_version"] >= 1
    line = cli.error("uninstall", code=2)
    assert "--yes" in line
    cli("uninstall", "--yes")
    assert cli.json("verify", code=4)["ok"] is False
    applied = cli.json("install")["applied"]
    shipped = [f"{m.version:04d}_{m.name}" for m in migrations()]
    assert applied[0] == "0001_init" and applied[: len(shipped)] == shipped
    assert applied[len(shipped) :] == [f"function {f.name}" for f in functions()]


def test_queue_limits_commands(installed: Cli) -> None:
    """Flow control from the CLI (docs/flow-control.md)."""
    cli = installed
    created = cli.json(
        "queue", "create", "jobs", "--concurrency-limit", "2", "--rate-limit", "100/s"
    )
    assert created["concurrency_limit"] == 2 and created["group_concurrency"] is None
    assert created["rate_limit"] == {"count": 100, "period": 1.0, "per_group": False}
    updated = cli.json(
        "queue",
        "update",
        "jobs",
        "--group-concurrency",
        "1",
        "--rate-limit",
        "10/m",
        "--rate-per-group",
    )
    assert updated["group_concurrency"] == 1
    assert updated["rate_limit"] == {"count": 10, "period": 60.0, "per_group": True}
    removed = cli.json("queue", "update", "jobs", "--concurrency-limit", "none")
    assert removed["concurrency_limit"] is None and removed["group_concurrency"] == 1
    stats = cli.json("queue", "stats", "jobs")
    assert stats["group_concurrency"] == 1 and stats["rate_limit"]["per_group"] is True
    assert "per group 1" in cli("queue", "stats", "jobs").stdout
    assert "rate 10/m per group" in cli("queue", "list").stdout
    cli("enqueue", "jobs", '{"n": 1}', "--group", "tenant-1")
    assert cli.json("dequeue", "jobs")["messages"][0]["group"] == "tenant-1"
    # Bad input: a usage error naming the value; nothing written.
    assert "fast" in cli("queue", "update", "jobs", "--rate-limit", "fast", code=2).stderr
    assert "0" in cli("queue", "create", "x", "--concurrency-limit", "0", code=2).stderr
    assert "nothing to change" in cli("queue", "update", "jobs", code=2).stderr
    assert [q["name"] for q in cli.json("queue", "list")] == ["jobs"]


def test_schedule_commands(installed: Cli) -> None:
    cli = installed
    cli("queue", "create", "reports")
    made = cli.json(
        "schedule", "add", "nightly", "--queue", "reports", "--payload", '{"kind": "daily"}',
        "--cron", "30 2 * * *", "--time-zone", "Europe/Berlin", "--missed", "latest",
        "--headers", '{"team": "ops"}', "--priority", "2",
    )  # fmt: skip
    assert (made["name"], made["cron"], made["time_zone"], made["missed"]) == (
        "nightly",
        "30 2 * * *",
        "Europe/Berlin",
        "latest",
    )
    assert made["payload"] == {"kind": "daily"} and made["priority"] == 2
    cli("schedule", "add", "tick", "--queue", "reports", "--payload", "1", "--interval", "5m")
    assert "already exists" in cli.error(
        "schedule", "add", "tick", "--queue", "reports", "--payload", "1", "--interval", "5", code=6
    )
    listed = cli.json("schedule", "list")
    assert [(s["name"], s["interval"]) for s in listed] == [("nightly", None), ("tick", 300)]
    assert "every 300s" in cli("schedule", "list").stdout
    cli("schedule", "pause", "tick")
    assert cli.json("schedule", "list")[1]["paused"] is True
    cli("schedule", "resume", "tick")
    assert cli.json("schedule", "list")[1]["paused"] is False
    cli("schedule", "rm", "tick", "--yes")
    assert [s["name"] for s in cli.json("schedule", "list")] == ["nightly"]
    assert "'tick'" in cli.error("schedule", "pause", "tick", code=3)
    bad = cli.error(
        "schedule", "add", "x", "--queue", "reports", "--payload", "1", "--cron", "61 * * * *",
        code=2,
    )  # fmt: skip
    assert "61 * * * *" in bad
    assert "Mars/Olympus" in cli.error(
        "schedule", "add", "x", "--queue", "reports", "--payload", "1", "--cron", "* * * * *",
        "--time-zone", "Mars/Olympus", code=2,
    )  # fmt: skip
    assert "invalid JSON" in cli.error(
        "schedule", "add", "x", "--queue", "reports", "--payload", "{no", "--interval", "5",
        code=2,
    )  # fmt: skip


def test_queue_commands(installed: Cli) -> None:
    cli = installed
    created = cli.json(
        "queue", "create", "emails", "--visibility-timeout", "2m", "--max-attempts", "3"
    )
    assert created["name"] == "emails"
    assert created["visibility_timeout"] == 120 and created["max_attempts"] == 3
    assert "already exists" in cli.error("queue", "create", "emails", code=6)
    cli("queue", "create", "emails", "--exist-ok")
    cli("queue", "create", "reports")
    listed = cli.json("queue", "list")
    assert [q["name"] for q in listed] == ["emails", "reports"]
    human = cli("queue", "list").stdout
    assert "emails" in human and "reports" in human and "120" in human

    cli("queue", "pause", "emails")
    assert cli.json("queue", "stats", "emails")["paused"] is True
    cli("enqueue", "emails", '{"n": 1}')
    assert cli.json("dequeue", "emails")["messages"] == []  # paused: nothing delivered
    cli("queue", "resume", "emails")
    stats = cli.json("queue", "stats")
    assert {s["queue"]: (s["ready"], s["paused"]) for s in stats} == {
        "emails": (1, False),
        "reports": (0, False),
    }
    assert "emails" in cli("queue", "stats").stdout

    assert "--yes" in cli.error("queue", "purge", "emails", code=2)
    assert cli.json("queue", "purge", "emails", "--yes")["purged"] == 1
    cli("queue", "delete", "emails", "--yes")
    assert [q["name"] for q in cli.json("queue", "list")] == ["reports"]
    for command in (
        ["stats", "emails"],
        ["pause", "emails"],
        ["resume", "emails"],
        ["purge", "emails", "--yes"],
        ["delete", "emails", "--yes"],
    ):
        assert "'emails' does not exist" in cli.error("queue", *command, code=3)


def test_enqueue_peek_dequeue(installed: Cli) -> None:
    cli = installed
    cli("queue", "create", "tasks")
    first = cli.json("enqueue", "tasks", '{"task": "send_email", "to": "user@example.com"}')
    assert first["inserted"] is True
    assert "enqueued message" in cli("enqueue", "tasks", '"plain string"', "--priority", "5").stdout
    cli("enqueue", "tasks", "[1, 2]", "--delay", "1h", "--headers", '{"trace": "abc"}')
    dup = cli.json("enqueue", "tasks", "{}", "--dedup-key", "k1")
    again = cli.json("enqueue", "tasks", "{}", "--dedup-key", "k1")
    assert again == {**dup, "inserted": False}

    peeked = cli.json("peek", "tasks")
    assert [(m["payload"], m["state"]) for m in peeked] == [
        ("plain string", "ready"),
        ({"task": "send_email", "to": "user@example.com"}, "ready"),
        ([1, 2], "delayed"),
        ({}, "ready"),
    ]
    assert peeked[2]["headers"] == {"trace": "abc"}
    assert "send_email" in cli("peek", "tasks", "--limit", "2").stdout

    leased = cli.json("dequeue", "tasks")["messages"]
    assert [m["payload"] for m in leased] == ["plain string"] and leased[0]["lease"]
    assert "leased" in cli("dequeue", "tasks").stderr  # the next one, left leased too
    archived = cli.json("dequeue", "tasks", "--archive")["messages"]
    assert [m["payload"] for m in archived] == [{}]
    assert (
        cli.json("dequeue", "tasks", "--delete")["messages"] == []
    )  # only the delayed one is left
    assert "no message ready" in cli("dequeue", "tasks").stderr
    stats = cli.json("queue", "stats", "tasks")
    assert (stats["ready"], stats["in_flight"], stats["delayed"]) == (0, 2, 1)
    assert stats["archived"] == {"completed": 1}


def test_enqueue_file_in_batches(
    installed: Cli, tmp_path: Path, sql: psycopg.Connection[Any], schema: str
) -> None:
    cli = installed
    cli("queue", "create", "bulk")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "".join(json.dumps({"n": i}) + "\n" + ("\n" if i % 100 == 0 else "") for i in range(1200))
    )
    result = cli.json("enqueue", "bulk", "--file", str(jobs), "--batch-size", "500")
    assert result["count"] == 1200 and len(set(result["ids"])) == 1200
    payloads = [
        r[0]["n"]
        for r in sql.execute(
            f'SELECT payload FROM "{schema}".messages WHERE queue = %s ORDER BY id', ["bulk"]
        )
    ]
    assert payloads == list(range(1200))
    assert (
        "enqueued 2 message(s)"
        in cli("enqueue", "bulk", "--file", "-", stdin='{"a": 1}\n[2]\n').stdout
    )

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ok": 1}\n{"ok": 2}\n{oops}\n')
    line = cli.error("enqueue", "bulk", "--file", str(bad), code=2)
    assert f"{bad} line 3" in line
    assert cli.json("queue", "stats", "bulk")["ready"] == 1202  # nothing from the bad file
    assert "cannot read" in cli.error(
        "enqueue", "bulk", "--file", str(tmp_path / "missing"), code=2
    )
    assert "either a JSON argument or --file" in cli.error("enqueue", "bulk", code=2)
    assert "does not exist" in cli.error("enqueue", "nosuch", "--file", str(jobs), code=3)


def test_archive_commands(installed: Cli, sql: psycopg.Connection[Any], schema: str) -> None:
    cli = installed
    cli("queue", "create", "jobs", "--max-attempts", "1")
    done = cli.json("enqueue", "jobs", '{"job": "done"}')["id"]
    failing = cli.json("enqueue", "jobs", '{"job": "fails"}')["id"]
    cli("dequeue", "jobs", "--archive")
    cli("dequeue", "jobs")  # leased once: its only attempt
    sql.execute(f"UPDATE \"{schema}\".messages SET visible_at = now() - interval '1 second'")
    assert cli.json("dequeue", "jobs")["messages"] == []  # out of attempts: archived as dead

    archived = cli.json("archive", "list")
    assert {(a["id"], a["status"]) for a in archived} == {(done, "completed"), (failing, "dead")}
    assert [a["id"] for a in cli.json("archive", "list", "--status", "dead")] == [failing]
    assert cli.json("archive", "list", "--queue", "other") == []
    assert "dead" in cli("archive", "list").stdout

    assert cli.json("archive", "redrive", "jobs")["redriven"] == [failing]
    assert [m["id"] for m in cli.json("peek", "jobs")] == [failing]
    assert "does not exist" in cli.error("archive", "redrive", "nosuch", code=3)

    assert cli.json("archive", "purge", "--older-than", "1h")["purged"] == 0
    sql.execute(f"UPDATE \"{schema}\".archive SET archived_at = now() - interval '2 days'")
    assert cli.json("archive", "purge", "--older-than", "1d")["purged"] == 1
    assert "invalid --older-than 'soon'" in cli.error(
        "archive", "purge", "--older-than", "soon", code=2
    )
    assert cli.error("archive", "purge", code=2)  # --older-than is required


def test_worker_list(installed: Cli, sql: psycopg.Connection[Any], schema: str) -> None:
    cli = installed
    assert "no workers registered" in cli("worker", "list").stderr
    sql.execute(
        f'INSERT INTO "{schema}".workers (hostname, pid, queues) VALUES (%s, %s, %s)',
        ["host-a", 4242, ["tasks", "emails"]],
    )
    workers = cli.json("worker", "list")
    assert [(w["hostname"], w["pid"], w["queues"], w["status"]) for w in workers] == [
        ("host-a", 4242, ["tasks", "emails"], "running")
    ]
    assert "host-a" in cli("worker", "list").stdout


def test_worker_run_bad_handler(installed: Cli, tmp_path: Path) -> None:
    cli = installed
    assert "MODULE:HANDLER" in cli.error("worker", "run", "nocolon", "--queue", "q", code=2)
    assert "cannot import module" in cli.error("worker", "run", "no_such_mod:f", "-q", "q", code=2)
    assert "no attribute" in cli.error("worker", "run", "json:nope", "-q", "q", code=2)


@pytest.mark.skipif(
    not hasattr(pgqrs, "Worker"), reason="the worker runtime (pgqrs.Worker) is not merged"
)
def test_worker_run(installed: Cli, dsn: str, schema: str, tmp_path: Path) -> None:
    import time

    cli = installed
    cli("queue", "create", "work")
    out = tmp_path / "handled.txt"
    (tmp_path / "cli_worker_handlers.py").write_text(
        "import json\n"
        f"OUT = {str(out)!r}\n"
        "def handle(msg):\n"
        "    with open(OUT, 'a') as f:\n"
        "        f.write(json.dumps(msg.payload) + '\\n')\n"
    )
    for i in range(3):
        cli("enqueue", "work", json.dumps({"i": i}))
    worker = subprocess.Popen(
        [
            str(PGQRS),
            *cli.prefix,
            "worker",
            "run",
            "cli_worker_handlers:handle",
            "-q",
            "work",
            "-c",
            "2",
        ],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if cli.json("queue", "stats", "work")["archived"].get("completed") == 3:
                break
            assert worker.poll() is None, worker.communicate()
            time.sleep(0.2)
        assert cli.json("queue", "stats", "work")["archived"] == {"completed": 3}
        assert sorted(out.read_text().splitlines()) == [json.dumps({"i": i}) for i in range(3)]
        workers = cli.json("worker", "list")
        assert [(w["queues"], w["status"]) for w in workers] == [(["work"], "running")]
    finally:
        worker.terminate()  # SIGTERM: a graceful stop
        _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert [w["status"] for w in cli.json("worker", "list")] == ["stopped"]


def test_demo_on_a_given_server(dsn: str, schema: str) -> None:
    cli = Cli(dsn, schema)
    out = cli("demo").stdout
    assert "admin.install() applied 0001_init" in out
    assert "Enqueued message: 1" in out
    assert (
        "Processing: {" in out
        and "'task': 'send_email'" in out
        and "'to': 'user@example.com'" in out
    )
    assert "archive has message 1 as 'completed'" in out
    steps = cli.json("demo")["steps"]  # again: idempotent
    assert [s["step"] for s in steps] == [
        "connect",
        "install",
        "create_queue",
        "enqueue",
        "dequeue",
        "archive",
        "verify",
    ]
    assert steps[3]["id"] == 2 and steps[4]["payload"] == {
        "task": "send_email",
        "to": "user@example.com",
    }


def test_error_paths(dsn: str, schema: str, tmp_path: Path) -> None:
    bad = Cli("not a dsn", schema)
    assert "invalid DSN" in bad.error("queue", "list", code=2)
    down = Cli(f"postgresql://postgres@/postgres?host={tmp_path}", schema)
    assert "cannot connect to PostgreSQL" in down.error("queue", "list", code=5)
    cli = Cli(dsn, schema)
    assert "is not installed" in cli.error("queue", "list", code=4)
    assert "pgqrs install" in cli.error("enqueue", "tasks", "{}", code=4)
    cli("install")
    assert "queue 'nosuch' does not exist" in cli.error("enqueue", "nosuch", "{}", code=3)
    assert "does not exist" in cli.error("peek", "nosuch", code=3)
    assert "does not exist" in cli.error("dequeue", "nosuch", code=3)
    assert "invalid JSON in argument" in cli.error("enqueue", "nosuch", "{oops", code=2)
    assert "invalid queue name" in cli.error("queue", "create", "bad name!", code=2)
    assert "No such command" in cli.error("frobnicate", code=2)
    assert "No such option" in cli.error("queue", "list", "--bogus", code=2)
    assert "invalid schema name" in Cli(dsn, "Bad-Schema").error("queue", "list", code=2)

    # --json: the error is one JSON line on stderr
    proc = cli("--json", "queue", "stats", "nosuch", code=3)
    error = json.loads(proc.stderr)
    assert (error["type"], error["exit_code"]) == ("QueueNotFound", 3) and "nosuch" in error[
        "error"
    ]
    assert proc.stdout == ""
    # --debug: the traceback too
    proc = cli("--debug", "queue", "stats", "nosuch", code=3)
    assert "Traceback" in proc.stderr and "QueueNotFound" in proc.stderr


def test_no_dsn_and_embedded_off_is_a_usage_error() -> None:
    proc = run("queue", "list", code=2)
    assert "no database given" in proc.stderr and "PGQRS_DSN" in proc.stderr


def test_help_version_and_python_m() -> None:
    assert "Exit codes:" in run("--help").stdout
    assert "Commands:" in run().stdout  # alone: the help
    assert "pause" in run("queue").stdout
    assert pgqrs.__version__ in run("--version").stdout
    proc = subprocess.run(
        [sys.executable, "-m", "pgqrs", "queue", "--help"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert proc.returncode == 0 and "create" in proc.stdout and "stats" in proc.stdout


def test_cancel_wait_and_retention_commands(installed: Cli, config: pgqrs.Config) -> None:
    cli = installed
    cli("queue", "create", "jobs", "--archive-retention", "7d")
    with pgqrs.Producer(config, "jobs") as p:
        a, b = (m.id for m in p.enqueue_batch([{"n": 1}, {"n": 2}]))
    assert cli.json("cancel", str(a)) == [{"id": a, "outcome": "cancelled"}]
    # Already archived: reported, exit code 1; unknown: exit code 3.
    assert cli.json("cancel", str(a), code=1) == [{"id": a, "outcome": "archived:cancelled"}]
    cli("cancel", "999999", code=3)
    assert cli.json("wait", str(a), "--timeout", "5s")["status"] == "cancelled"
    line = cli.error("wait", str(b), "--timeout", "0.2s", code=7)
    assert f"message {b} was not archived within 0.2s" in line
    assert "progress" in cli("peek", "jobs").stdout
    assert "kept for 3600s" in cli("queue", "retention", "jobs", "1h").stdout
    assert "for ever" in cli("queue", "retention", "jobs", "none").stdout
    cli.error("queue", "retention", "jobs", "soon", code=2)
    cli.error("queue", "retention", "nope", "1h", code=3)
