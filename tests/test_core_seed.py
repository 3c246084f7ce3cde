"""The seed's Python Quick Example runs as written (only the DSN changes)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart.py"
SEED = ROOT.parent / "shared" / "seed" / "pgqrs-overview.md"
SEED_DSN = "postgresql://user:pass@localhost/mydb"


def seed_python_block() -> str:
    text = SEED.read_text(encoding="utf-8")
    match = re.search(r'=== "Python"\n\n    ```python\n(.*?)    ```', text, re.S)
    assert match, "the seed has no Python Quick Example"
    lines = match.group(1).splitlines()
    return "\n".join(line[4:] if line.startswith("    ") else line for line in lines) + "\n"


# sha256 of the seed's Python block, for checkouts without ../shared beside them.
SEED_BLOCK_SHA256 = "a705cc0f693f96fc41936f195ee42a49a304e57ac16d8fccedb5c45a5bc27a03"


def test_example_is_the_seed_verbatim() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == SEED_BLOCK_SHA256
    if SEED.exists():  # beside the checkout in development and CI
        assert text == seed_python_block()


def test_seed_example_runs_against_a_fresh_database(database_dsn: str) -> None:
    code = EXAMPLE.read_text(encoding="utf-8")
    assert code.count(SEED_DSN) == 1
    code = code.replace(SEED_DSN, database_dsn)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"Enqueued message: \d+", lines[0])
    assert lines[1] == "Processing: {'to': 'user@example.com', 'task': 'send_email'}" or lines[
        1
    ] == ("Processing: {'task': 'send_email', 'to': 'user@example.com'}")
    msg_id = int(lines[0].split(": ")[1])
    with psycopg.connect(database_dsn) as conn:
        row = conn.execute(
            "SELECT status, queue FROM pgqrs.archive WHERE id = %s", [msg_id]
        ).fetchone()
        left = conn.execute("SELECT count(*) FROM pgqrs.messages").fetchone()
    assert row == ("completed", "tasks")
    assert left == (0,)
