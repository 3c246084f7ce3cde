#!/usr/bin/env python3
"""Generate src/pgqrs/_sync/ from src/pgqrs/_async/ (the source of truth).

The asyncio code is written so that a few mechanical rewrites give the sync
twin: drop ``async``/``await``, and swap each asyncio name for its blocking
counterpart. ``--check`` exits 1 when the generated files are stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "pgqrs" / "_async"
DST = ROOT / "src" / "pgqrs" / "_sync"

# Whole-word renames, applied in order.
RENAMES = [
    ("AsyncConnectionPool", "ConnectionPool"),
    ("AsyncRawCursor", "RawCursor"),
    ("AsyncConnection", "Connection"),
    ("AsyncIterator", "Iterator"),
    ("AsyncGenerator", "Generator"),
    ("asynccontextmanager", "contextmanager"),
    ("__aenter__", "__enter__"),
    ("__aexit__", "__exit__"),
    ("pgqrs._async", "pgqrs._sync"),
    ("asyncio.Lock", "threading.Lock"),
    # A module that imports asyncio only to sleep says so: it imports time instead.
    ("import asyncio  # sleep", "import time  # sleep"),
    ("asyncio.sleep", "time.sleep"),
    ("import asyncio", "import threading"),
    # pgqrs._cancel: a cancelled asyncio call ends its round trip; a blocking one is never cut.
    ("shielded", "unshielded"),
]
REWRITES = [
    (re.compile(r"\basync def\b"), "def"),
    (re.compile(r"\basync with\b"), "with"),
    (re.compile(r"\basync for\b"), "for"),
    (re.compile(r"\bawait "), ""),
]


def convert(text: str, name: str) -> str:
    if name == "__init__.py":
        text = '"""The blocking twin of pgqrs._async, generated from it."""\n'
    for old, new in RENAMES:
        text = re.sub(rf"(?<!\w){re.escape(old)}(?!\w)", new, text)
    for pattern, new in REWRITES:
        text = pattern.sub(new, text)
    # "(await x)[0]" leaves "(x)[0]"; fine. Mark the file as generated.
    header = (
        f"# WARNING: generated from src/pgqrs/_async/{name} by tools/async_to_sync.py.\n"
        "# Do not edit: change the asyncio source and regenerate.\n"
    )
    return header + text


def expected() -> dict[Path, str]:
    return {
        DST / p.name: convert(p.read_text(encoding="utf-8"), p.name)
        for p in sorted(SRC.glob("*.py"))
    }


def main(argv: list[str]) -> int:
    files = expected()
    if "--check" in argv:
        stale = [
            p
            for p, text in files.items()
            if not p.exists() or p.read_text(encoding="utf-8") != text
        ]
        extra = [p for p in DST.glob("*.py") if p not in files]
        for p in stale + extra:
            print(f"stale: {p.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale or extra else 0
    DST.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
