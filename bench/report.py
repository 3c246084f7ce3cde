"""Printing results as tables with ratios, and writing JSON, PNG charts and Markdown."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.workloads import Result

#: The reference columns: the hand-written client (its batch enqueue as
#: ``unnest``, kept for history; ``hand-param`` and ``hand-copy``, W2's
#: stronger ones), and pgbench.
REFERENCES = ("hand", "hand-param", "hand-copy", "pgbench")


def _ref(results: list[Result], r: Result, ref: str) -> float | None:
    for o in results:
        if o.workload == r.workload and o.case == r.case and o.system == ref and o.runs:
            return o.median
    return None


def ratio(results: list[Result], r: Result, ref: str) -> float | None:
    base = _ref(results, r, ref)
    if base is None or not base or r.unit != "jobs/s" or not r.runs:
        return None
    return r.median / base


def _fmt(v: float, unit: str) -> str:
    if math.isnan(v):
        return "-"
    if unit == "ms":
        return f"{v:.2f}"
    if unit == "MB":
        return f"{v:.1f}"
    return f"{v:,.0f}"


def rows(results: list[Result]) -> list[list[str]]:
    out = []
    for r in results:
        cells = [
            r.workload,
            r.case,
            r.system,
            f"{_fmt(r.median, r.unit)} {r.unit}",
            " / ".join(_fmt(x, r.unit) for x in r.runs),
        ]
        for ref in REFERENCES:
            x = ratio(results, r, ref)
            cells.append("" if x is None or r.system == ref else f"{x:.2f}x")
        cpu = r.extra.get("cpu_us_per_job")
        cells.append(f"{statistics.median(cpu):.1f}" if cpu else "")
        out.append(cells)
    return out


HEADER = [
    "workload",
    "case",
    "system",
    "median",
    "runs",
    *(f"x {ref}" for ref in REFERENCES),
    "client CPU us/job",
]


def table(results: list[Result]) -> str:
    body = rows(results)
    widths = [max(len(c) for c in col) for col in zip(HEADER, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))

    return "\n".join([line(HEADER), line(["-" * w for w in widths]), *map(line, body)])


def markdown(results: list[Result]) -> str:
    body = rows(results)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def to_json(results: Iterable[Result], meta: dict[str, Any]) -> dict[str, Any]:
    rs = list(results)
    return {
        "meta": meta,
        "results": [
            {
                "workload": r.workload,
                "case": r.case,
                "system": r.system,
                "unit": r.unit,
                "median": r.median,
                "runs": r.runs,
                "extra": r.extra,
                **{f"ratio_{ref.replace('-', '_')}": ratio(rs, r, ref) for ref in REFERENCES},
            }
            for r in rs
        ],
    }


def chart(results: list[Result], workload: str, path: Path) -> None:
    """A grouped bar chart of one workload: cases on x, one bar per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in results if r.workload == workload and r.runs]
    if not rs:
        return
    cases = list(dict.fromkeys(r.case for r in rs))
    systems = list(dict.fromkeys(r.system for r in rs))
    unit = rs[0].unit
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cases) + 2), 4.5))
    width = 0.8 / len(systems)
    for k, system in enumerate(systems):
        xs, ys, lo, hi = [], [], [], []
        for i, case in enumerate(cases):
            for r in rs:
                if r.case == case and r.system == system:
                    xs.append(i + k * width - 0.4 + width / 2)
                    ys.append(r.median)
                    lo.append(r.median - min(r.runs))
                    hi.append(max(r.runs) - r.median)
        ax.bar(xs, ys, width, label=system, yerr=[lo, hi], capsize=2)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(unit)
    ax.set_title(f"pgqrs {workload} (median of runs; bars span min..max)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ratio_chart(results: list[Result], workload: str, path: Path) -> None:
    """Every system's median as a ratio to the hand-written client's, per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in results if r.workload == workload and r.runs and r.system != "hand"]
    pairs = [(r, ratio(results, r, "hand")) for r in rs]
    pairs = [(r, x) for r, x in pairs if x is not None]
    if not pairs:
        return
    cases = list(dict.fromkeys(r.case for r, _ in pairs))
    systems = list(dict.fromkeys(r.system for r, _ in pairs))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cases) + 2), 4.5))
    width = 0.8 / len(systems)
    for k, system in enumerate(systems):
        xs, ys = [], []
        for i, case in enumerate(cases):
            for r, x in pairs:
                if r.case == case and r.system == system:
                    xs.append(i + k * width - 0.4 + width / 2)
                    ys.append(x)
        ax.bar(xs, ys, width, label=system)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("x hand-written client (median / median)")
    ax.set_title(f"pgqrs {workload}: ratio to the hand-written client (1.0 = equal)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: list[Result], meta: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = to_json(results, meta)
    (out / "results.json").write_text(json.dumps(data, indent=2, default=str))
    for workload in dict.fromkeys(r.workload for r in results):
        part = {"meta": meta, "results": [x for x in data["results"] if x["workload"] == workload]}
        (out / f"{workload}.json").write_text(json.dumps(part, indent=2, default=str))
        chart(results, workload, out / f"{workload}.png")
        ratio_chart(results, workload, out / f"{workload}-ratio.png")
    text = markdown(results) + "\n"
    checked = meta.get("targets")
    if checked:
        text += "\n| target | measured | holds |\n|---|---|---|\n"
        for t in checked:
            v = t["measured"]
            shown = (
                "not measured"
                if v is None
                else (f"{v:.2f}x" if t["unit"] == "x" else f"{v:.2f} {t['unit']}")
            )
            state = {True: "yes", False: "**no**", None: "-"}[t["ok"]]
            text += f"| {t['target']} | {shown} | {state} |\n"
    (out / "results.md").write_text(text)
