"""The targets of issues 7 and 21, checked against a run's medians."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.report import ratio
from bench.workloads import Result


def _get(results: list[Result], workload: str, case: str, system: str) -> Result | None:
    for r in results:
        if r.workload == workload and r.case == case and r.system == system and r.runs:
            return r
    return None


def check(results: list[Result]) -> list[dict[str, Any]]:
    """One row per target: name, measured figure, goal, ok (None when not measured)."""
    out: list[dict[str, Any]] = []

    def add(
        name: str, value: float | None, goal: float, ok: Callable[[float], bool], unit: str = "x"
    ) -> None:
        out.append(
            {
                "target": name,
                "measured": value,
                "goal": goal,
                "unit": unit,
                "ok": None if value is None else ok(value),
            }
        )

    def vs(workload: str, case: str, system: str, ref: str) -> float | None:
        r = _get(results, workload, case, system)
        return None if r is None else ratio(results, r, ref)

    def vs_hand(workload: str, case: str, system: str) -> float | None:
        return vs(workload, case, system, "hand")

    for system in ("pgqrs-sync", "pgqrs-async"):
        for case in ("producers=1", "producers=4"):
            add(
                f"W1 {case} {system} vs hand >= 0.9x",
                vs_hand("W1", case, system),
                0.9,
                lambda v: v >= 0.9,
            )
        for case in ("batch=100 producers=1", "batch=100 producers=4", "batch=1000 producers=1"):
            add(
                f"W2 {case} {system} vs hand >= 1.0x",
                vs_hand("W2", case, system),
                1.0,
                lambda v: v >= 1.0,
            )
        for complete, goal in (("delete", 0.9), ("archive", 0.7)):
            for batch in (1, 100):
                for clients in (1, 4):
                    case = f"{complete} batch={batch} consumers={clients}"
                    add(
                        f"W3 {case} {system} vs hand >= {goal}x",
                        vs_hand("W3", case, system),
                        goal,
                        lambda v, g=goal: v >= g,
                    )

    # Issue 21: against the strongest simple references.
    for system in ("pgqrs-sync", "pgqrs-async"):
        for case, ref in (
            ("batch=100 producers=1", "hand-param"),
            ("batch=100 producers=4", "hand-param"),
            ("batch=1000 producers=1", "hand-copy"),
        ):
            add(
                f"W2 {case} {system} vs {ref} >= 0.8x",
                vs("W2", case, system, ref),
                0.8,
                lambda v: v >= 0.8,
            )
        for clients in (1, 4):
            case = f"archive batch=100 consumers={clients}"
            add(
                f"W3 {case} {system} vs hand (fenced archiving client) >= 0.8x",
                vs("W3", case, system, "hand"),
                0.8,
                lambda v: v >= 0.8,
            )
    w4_fleet = _get(results, "W4", "workers=4 concurrency=100", "pgqrs-worker")
    w3b = _get(results, "W3", "archive batch=100 consumers=4", "pgqrs-sync")
    add(
        "W4 4 workers c=100 vs W3 archive batch=100 consumers=4 (sync consumer API) >= 0.8x",
        None if (w3b is None or w4_fleet is None) else w4_fleet.median / w3b.median,
        0.8,
        lambda v: v >= 0.8,
    )
    w3one = _get(results, "W3", "archive batch=100 consumers=1", "pgqrs-sync")
    w4 = _get(results, "W4", "concurrency=16", "pgqrs-worker")
    add(
        "W4 c=16 vs W3 archive batch=100 consumers=1 (one sync client, as one worker) >= 0.8x",
        None if (w3one is None or w4 is None) else w4.median / w3one.median,
        0.8,
        lambda v: v >= 0.8,
    )
    add(
        "W4 c=16 vs W3 archive batch=100 consumers=4 (sync) >= 0.7x",
        None if (w3b is None or w4 is None) else w4.median / w3b.median,
        0.7,
        lambda v: v >= 0.7,
    )
    p50 = _get(results, "W5", "notify", "p50")
    p99 = _get(results, "W5", "notify", "p99")
    add("W5 NOTIFY p50 <= 2 ms", None if p50 is None else p50.median, 2.0, lambda v: v <= 2.0, "ms")
    add("W5 NOTIFY p99 <= 5 ms", None if p99 is None else p99.median, 5.0, lambda v: v <= 5.0, "ms")
    small = _get(results, "W6", "waiting=10,000", "pgqrs-sync")
    big = _get(results, "W6", "waiting=1,000,000", "pgqrs-sync")
    add(
        "W6 1,000,000 waiting vs 10,000 >= 0.8x",
        None if (small is None or big is None) else big.median / small.median,
        0.8,
        lambda v: v >= 0.8,
    )
    rss = _get(results, "RSS", "concurrency=64 jobs=10,000", "pgqrs-worker")
    add(
        "worker peak RSS <= 150 MB",
        None if rss is None else rss.median,
        150.0,
        lambda v: v <= 150,
        "MB",
    )
    for complete in ("archive", "delete"):
        for clients in (1, 4):
            case = f"{complete} batch=100 consumers={clients}"
            rust = _get(results, "W3", case, "pgqrs-rust")
            py = _get(results, "W3", case, "pgqrs-sync")
            add(
                f"Rust batch drain vs Python (sync), {case} >= 1.2x",
                None if (rust is None or py is None) else rust.median / py.median,
                1.2,
                lambda v: v >= 1.2,
            )
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        v = r["measured"]
        shown = (
            "not measured"
            if v is None
            else (f"{v:.2f}{r['unit']}" if r["unit"] == "x" else f"{v:.2f} {r['unit']}")
        )
        state = {True: "OK  ", False: "MISS", None: "--  "}[r["ok"]]
        lines.append(f"{state} {r['target']}: {shown}")
    return "\n".join(lines)
