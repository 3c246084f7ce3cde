"""The workloads W1..W6: each yields Results (one per case and system).

Every point is run ``reps`` times and reported as the median; within a rep
the systems take turns (in a rotating order) so that noise on the shared
machine spreads evenly over them. Tables are emptied (TRUNCATE), refilled
with ``INSERT ... SELECT`` where a backlog is needed, vacuumed, analyzed and
checkpointed before each run, so every system starts from the same state.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

import pgqrs
from bench import harness, pgbench, systems
from bench.systems import QUEUE, SCHEMA

PYTHON_SYSTEMS = ["pgqrs-sync", "pgqrs-async", "hand"]
ALL_SYSTEMS = [*PYTHON_SYSTEMS, "pgbench"]


@dataclasses.dataclass
class Result:
    workload: str
    case: str
    system: str
    unit: str
    runs: list[float]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")


@dataclasses.dataclass
class Ctx:
    dsn: str
    quick: bool
    reps: int
    systems: list[str]
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)

    def sql(self, *statements: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for s in statements:
                conn.execute(s)  # type: ignore[arg-type]

    def scalar(self, statement: str) -> Any:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(statement).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]


# --- table state ------------------------------------------------------------------

FILL = {
    "pgqrs": (
        f"INSERT INTO {SCHEMA}.messages (queue, payload) "
        "SELECT '" + QUEUE + "', jsonb_build_object('task', 'noop', 'n', g) "
        "FROM generate_series(1, {n}) g"
    ),
    "hand": (
        "INSERT INTO hand.jobs (queue, payload) "
        "SELECT '" + QUEUE + "', jsonb_build_object('task', 'noop', 'n', g) "
        "FROM generate_series(1, {n}) g"
    ),
}
TABLES = {
    "pgqrs": (f"{SCHEMA}.messages", f"{SCHEMA}.archive"),
    "hand": ("hand.jobs", "hand.archive"),
}


def family(system: str) -> str:
    """Which tables a system works on: pgqrs's, or the hand-written ones (pgbench too)."""
    return "pgqrs" if system.startswith("pgqrs") else "hand"


def reset(ctx: Ctx, system: str, backlog: int = 0) -> None:
    """Empty the system's tables, then fill ``backlog`` waiting jobs; vacuum; checkpoint."""
    fam = family(system)
    jobs, archive = TABLES[fam]
    stmts = [f"TRUNCATE {jobs}, {archive}"]
    if backlog:
        stmts.append(FILL[fam].format(n=backlog))
    stmts += [f"VACUUM ANALYZE {jobs}", f"VACUUM ANALYZE {archive}", "CHECKPOINT"]
    ctx.sql(*stmts)


def waiting(ctx: Ctx, system: str) -> int:
    return int(ctx.scalar(f"SELECT count(*) FROM {TABLES[family(system)][0]}"))


def rotated(items: list[str], rep: int) -> list[str]:
    k = rep % len(items)
    return items[k:] + items[:k]


# --- W1, W2: enqueue ----------------------------------------------------------------------


def run_enqueue(
    ctx: Ctx,
    workload: str,
    cases: list[tuple[int, int]],
    seconds: float,
    extra: tuple[str, ...] = (),
) -> Iterator[Result]:
    names = [s for s in ctx.systems if s != "pgqrs-rust"]
    # An extra runs with the system it varies: hand+notify with hand, and so on.
    names += [e for e in extra if any(e.startswith(s) for s in ctx.systems)]
    for clients, batch in cases:
        case = f"batch={batch} producers={clients}" if batch > 1 else f"producers={clients}"
        results = {s: Result(workload, case, s, "jobs/s", []) for s in names}
        for rep in range(ctx.reps):
            for system in rotated(names, rep):
                reset(ctx, system)
                if system == "pgbench":
                    script = pgbench.enqueue_script(
                        [json.dumps(systems.payload(i)) for i in range(batch)]
                    )
                    r = pgbench.run(ctx.dsn, script, clients, duration=seconds)
                    rate = r.tps * batch
                else:
                    t = systems.enqueue(system, ctx.dsn, clients, batch, seconds)
                    rate = t.ops / t.seconds
                    client_cpu(results[system], t)
                results[system].runs.append(rate)
                ctx.log(
                    f"  {workload} {case} {system}: {rate:,.0f} jobs/s{cpu_note(results[system])}"
                )
        yield from results.values()


def w1(ctx: Ctx) -> Iterator[Result]:
    """W1: enqueue one job per transaction, 1 and 4 producers."""
    yield from run_enqueue(
        ctx,
        "W1",
        [(1, 1), (4, 1)],
        1.0 if ctx.quick else 3.0,
        extra=("hand+notify", "hand-unprepared", "pgqrs-sync+listening"),
    )


def w2(ctx: Ctx) -> Iterator[Result]:
    """W2: enqueue in batches of 100 (1 and 4 producers) and of 1,000 (1 producer).

    References: ``hand`` (``unnest`` of a ``jsonb[]``, the history's),
    ``hand-param`` (the batch as one jsonb parameter) and ``hand-copy`` (COPY).
    """
    yield from run_enqueue(
        ctx,
        "W2",
        [(1, 100), (4, 100), (1, 1000)],
        1.0 if ctx.quick else 2.0,
        extra=("hand-param", "hand-copy"),
    )


# --- W3: drain ----------------------------------------------------------------------------

W3_BACKLOG = 20_000


def client_cpu(result: Result, t: harness.Timing) -> None:
    """Record a run's client CPU time per job, in microseconds (encoding,
    checks, building results, and the driver's own work)."""
    if t.ops and t.cpu == t.cpu:  # NaN: not measured (the Rust client)
        result.extra.setdefault("cpu_us_per_job", []).append(t.cpu / t.ops * 1e6)


def cpu_note(result: Result) -> str:
    runs = result.extra.get("cpu_us_per_job")
    return f" ({runs[-1]:.1f} us CPU/job)" if runs else ""


def drain_once(
    ctx: Ctx,
    system: str,
    clients: int,
    batch: int,
    complete: str,
    target: int,
    result: Result | None = None,
) -> float:
    """Drain ``target`` jobs from the current backlog; return jobs/s (and
    record the client CPU per job in ``result``)."""
    if system == "pgbench":
        per_client = max(1, target // (batch * clients))
        before = waiting(ctx, system)
        r = pgbench.run(
            ctx.dsn, pgbench.drain_script(batch, complete), clients, transactions=per_client
        )
        drained = before - waiting(ctx, system)
        return drained / r.seconds
    t = systems.drain(system, ctx.dsn, clients, batch, complete, target)
    if result is not None:
        client_cpu(result, t)
    return t.ops / t.seconds


def w3(ctx: Ctx) -> Iterator[Result]:
    """W3: drain a backlog of 20,000 (dequeue + archive, or + delete).

    Batch-100 drains take the whole backlog; one-at-a-time drains take the
    first 2,000 of it (so a point stays a few seconds long).
    """
    backlog = 5_000 if ctx.quick else W3_BACKLOG
    for complete in ("archive", "delete"):
        for batch in (1, 100):
            for clients in (1, 4):
                target = backlog if batch > 1 else (1_000 if ctx.quick else 2_000)
                case = f"{complete} batch={batch} consumers={clients}"
                names = list(ctx.systems)
                if batch == 1 and "hand" in names:
                    # Two statements per job: what unprepared statements cost the reference.
                    names.append("hand-unprepared")
                results = {
                    s: Result("W3", case, s, "jobs/s", [], {"backlog": backlog, "drained": target})
                    for s in names
                }
                for rep in range(ctx.reps):
                    for system in rotated(names, rep):
                        reset(ctx, system, backlog)
                        res = results[system]
                        rate = drain_once(ctx, system, clients, batch, complete, target, res)
                        res.runs.append(rate)
                        ctx.log(f"  W3 {case} {system}: {rate:,.0f} jobs/s{cpu_note(res)}")
                yield from results.values()


# --- W6: drain as the backlog grows -----------------------------------------------------

W6_SIZES = [10_000, 100_000, 1_000_000]


def w6(ctx: Ctx) -> Iterator[Result]:
    """W6: the batch-100 archive drain (4 consumers) of 10,000 jobs with N waiting.

    The backlog is topped up to N before each run, so each run starts with N
    waiting; the sizes grow in turn, so only the first fill is large.
    """
    sizes = [10_000, 100_000, 200_000] if ctx.quick else W6_SIZES
    drained = 5_000 if ctx.quick else 10_000
    sysnames = [s for s in ctx.systems if s in ("pgqrs-sync", "hand")]
    for system in sysnames:
        reset(ctx, system)
    for size in sizes:
        case = f"waiting={size:,}"
        results = {
            s: Result("W6", case, s, "jobs/s", [], {"waiting": size, "drained": drained})
            for s in sysnames
        }
        for rep in range(ctx.reps):
            for system in rotated(sysnames, rep):
                have = waiting(ctx, system)
                if size > have:
                    ctx.sql(FILL[family(system)].format(n=size - have))
                    if size - have > 50_000:
                        ctx.sql(f"VACUUM ANALYZE {TABLES[family(system)][0]}")
                ctx.sql("CHECKPOINT")
                rate = drain_once(ctx, system, 4, 100, "archive", drained)
                results[system].runs.append(rate)
                ctx.log(f"  W6 {case} {system}: {rate:,.0f} jobs/s")
        yield from results.values()


def setup(ctx: Ctx) -> None:
    """Install pgqrs (schema ``pgqrs``, queue ``bench``) and the hand-written tables."""
    from bench import hand

    ctx.sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    with pgqrs.Admin(systems.config(ctx.dsn)) as admin:
        admin.install()
        admin.create_queue(QUEUE)
    hand.install(ctx.dsn)
