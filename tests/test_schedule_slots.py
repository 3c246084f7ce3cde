"""Python and Rust compute the same schedule slots (docs/schedules.md).

tests/data/schedule_slots.json (written by tools/gen_schedule_slots.py) holds
cron and interval cases over time zones and their DST days, with the slots
the rule gives. Both implementations must reproduce every case: Python here,
Rust through ``rust/examples/conformance.rs slots``. The DST cases the docs
quote are also checked against hand-computed instants, so the fixture cannot
drift with the code that wrote it.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from _drivers import build_conformance_binary
from pgqrs._errors import Error
from pgqrs._schedule import Timing, cron_fields

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "schedule_slots.json").read_text(encoding="utf-8")
)

#: Hand-computed: Europe/Berlin jumps 02:00 CET -> 03:00 CEST at 01:00 UTC on
#: 2026-03-29 and falls back 03:00 CEST -> 02:00 CET at 01:00 UTC on 2026-10-25;
#: America/New_York jumps at 07:00 UTC on 2026-03-08 and falls back at 06:00 UTC
#: on 2026-11-01.
BY_HAND = [
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T23:00:00Z", ["2026-03-29T01:00:00Z"]),
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T23:00:00Z", ["2026-10-25T00:30:00Z"]),
    ("0 2 * * *", "Europe/Berlin", "2026-03-28T23:00:00Z", ["2026-03-29T01:00:00Z"]),
    ("0 3 * * *", "Europe/Berlin", "2026-03-28T23:00:00Z", ["2026-03-29T01:00:00Z"]),
    ("30 1 * * *", "America/New_York", "2026-11-01T04:00:00Z", ["2026-11-01T05:30:00Z"]),
    ("0 2 * * *", "America/New_York", "2026-03-08T05:00:00Z", ["2026-03-08T07:00:00Z"]),
]


def _python(case: dict[str, Any]) -> object:
    start = datetime.datetime.fromisoformat(case["after"].replace("Z", "+00:00"))
    try:
        cron = case.get("cron")
        t = Timing(
            None if cron is None else cron_fields(cron), case.get("interval"), case["time_zone"]
        )
        return [s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in t.slots(start, case["count"])]
    except Error as exc:
        return {"error": type(exc).__name__}


def _same(expected: object, got: object) -> bool:
    if isinstance(expected, dict):  # an error: the same kind
        return isinstance(got, dict) and got.get("error") == expected["error"]
    return expected == got


def test_the_fixture_covers_zones_and_dst_days() -> None:
    assert len(CASES) > 200
    zones = {c["time_zone"] for c in CASES}
    assert {"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia"} <= zones
    assert any(isinstance(c["slots"], dict) for c in CASES)  # rejected expressions too


def test_python_reproduces_every_case() -> None:
    wrong = [(c, got) for c in CASES if not _same(c["slots"], got := _python(c))]
    assert not wrong, wrong[:3]


@pytest.mark.parametrize(("cron", "zone", "after", "first"), BY_HAND)
def test_dst_cases_by_hand(cron: str, zone: str, after: str, first: list[str]) -> None:
    case = next(
        c for c in CASES if (c.get("cron"), c["time_zone"], c["after"]) == (cron, zone, after)
    )
    assert case["slots"][: len(first)] == first


def test_rust_reproduces_every_case() -> None:
    binary = build_conformance_binary()
    proc = subprocess.run(
        [str(binary), "slots"],
        input=json.dumps([{k: v for k, v in c.items() if k != "slots"} for c in CASES]),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert len(got) == len(CASES)
    wrong = [(c, g) for c, g in zip(CASES, got, strict=True) if not _same(c["slots"], g)]
    assert not wrong, wrong[:3]
