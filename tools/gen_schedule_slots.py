"""Write tests/data/schedule_slots.json: cron and interval cases (expressions,
time zones, DST days) with the slots pgqrs's rule gives (docs/schedules.md),
computed by the Python implementation. tests/test_schedule_slots.py checks
both implementations (Python, and Rust through rust/examples/conformance.rs
slots) against it; the DST cases the docs quote are also checked by hand there.

Run after changing the rule or the cases: python tools/gen_schedule_slots.py
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from pgqrs._errors import Error
from pgqrs._schedule import Timing, cron_fields

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "schedule_slots.json"

EXPRESSIONS = [
    "* * * * *",
    "*/15 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "0 2 * * *",
    "59 1 * * *",
    "0 3 * * *",
    "30 1 * * *",
    "0 0 * * 0",
    "0 12 * * 7",
    "0 9 * * MON-FRI",
    "0 0 1 * *",
    "0 0 29 2 *",
    "0 0 1,15 * 1",
    "5-10/2 */3 * JAN,JUL *",
    "0 0 L * *",
    "0 0 30 2 *",
    "0 0 31 4,6 *",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
]
#: Each zone with instants just before its transitions (and one plain day).
ZONES = {
    "UTC": ["2026-06-15T10:07:30Z"],
    "Europe/Berlin": ["2026-03-28T23:00:00Z", "2026-10-24T23:00:00Z", "2026-06-15T10:07:30Z"],
    "America/New_York": ["2026-03-08T05:00:00Z", "2026-11-01T04:00:00Z"],
    "Australia/Lord_Howe": ["2026-04-04T13:00:00Z", "2026-10-03T14:30:00Z"],
    "Asia/Kolkata": ["2026-06-15T10:07:30Z"],
    "America/Sao_Paulo": ["2018-11-03T23:00:00Z", "2019-02-16T23:00:00Z"],
    "Pacific/Apia": ["2011-12-29T09:00:00Z"],
}
INTERVALS = [1, 7, 3600, 86400, 90061]


def slots(cron: str | None, interval: int | None, zone: str, after: str, count: int) -> object:
    start = datetime.datetime.fromisoformat(after.replace("Z", "+00:00"))
    try:
        t = Timing(None if cron is None else cron_fields(cron), interval, zone)
        return [s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in t.slots(start, count)]
    except Error as exc:
        return {"error": type(exc).__name__}


def main() -> None:
    cases = []
    for cron in EXPRESSIONS:
        for zone, afters in ZONES.items():
            for after in afters:
                count = 8 if cron.startswith(("*", "0 *", "@hourly")) else 4
                cases.append({"cron": cron, "time_zone": zone, "after": after, "count": count})
    for interval in INTERVALS:
        cases.append(
            {"interval": interval, "time_zone": "UTC", "after": "2026-06-15T10:07:30Z", "count": 4}
        )
    for case in cases:
        case["slots"] = slots(
            case.get("cron"), case.get("interval"), case["time_zone"], case["after"], case["count"]
        )
    OUT.write_text(json.dumps(cases, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
