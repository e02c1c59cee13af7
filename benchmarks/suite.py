"""``make bench``: every benchmark of issue #8 in one run, then the targets side by side.

The targets are ratios measured in the same run on the same machine (absolute rates
vary with the machine; ratios much less), so the suite runs them back to back on one
Postgres server (``DATABASE_URL`` or one throwaway server for the whole run) and one
Redis (``REDIS_URL`` or a throwaway one, for the BullMQ comparison). Each benchmark
still prints its own table and writes its own result file; the suite adds a summary
table and a ``suite-*.json`` holding all of it.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks import machine_info, pg, results_io


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    goal: str
    met: bool | None  # None: not measured in this run


@dataclass(frozen=True)
class SuiteSettings:
    hello_instances: int = 5_000
    dbos_instances: int = 300
    batch_instances: int = 100_000
    bullmq_jobs: int = 20_000
    latency_seconds: float = 10.0
    skip: frozenset[str] = frozenset()


@contextmanager
def _shared_postgres() -> Iterator[None]:
    """One server for every benchmark: each reads DATABASE_URL and makes its own database."""
    if os.environ.get("DATABASE_URL"):
        yield
        return
    with pg.server() as dsn:
        os.environ["DATABASE_URL"] = dsn
        try:
            yield
        finally:
            del os.environ["DATABASE_URL"]


def _run(
    name: str, settings: SuiteSettings, call: Callable[[], dict[str, Any]]
) -> dict[str, Any] | None:
    if name in settings.skip:
        print(f"-- {name}: skipped")
        return None
    print(f"\n== {name}")
    return call()


def run(settings: SuiteSettings, out: pathlib.Path | None = None) -> dict[str, Any]:
    from benchmarks import hello, interpreter, latency, peer_dbos, transitions

    results: dict[str, dict[str, Any] | None] = {}
    with _shared_postgres():
        results["interpreter"] = _run(
            "interpreter", settings, lambda: interpreter.main(seconds=2.0)
        )
        results["transitions"] = _run("transitions", settings, lambda: transitions.main(out=out))
        results["hello"] = _run(
            "hello", settings, lambda: hello.main(instances=settings.hello_instances, out=out)
        )
        results["peer-dbos"] = _run(
            "peer-dbos",
            settings,
            lambda: peer_dbos.main(instances=settings.dbos_instances, out=out),
        )
        results["latency"] = _run(
            "latency", settings, lambda: latency.main(seconds=settings.latency_seconds, out=out)
        )
        results["bullmq"] = _run("bullmq", settings, lambda: _bullmq(settings, out))
        results["batch"] = _run("batch", settings, lambda: _batch(settings, out))
    targets = evaluate(results)
    print()
    for line in table(targets):
        print(line)
    info = machine_info.describe()
    summary: dict[str, Any] = {
        "benchmark": "suite",
        "machine": info,
        "parameters": {k: v for k, v in settings.__dict__.items() if k != "skip"},
        "targets": [t.__dict__ for t in targets],
        "results": {k: v for k, v in results.items() if v is not None},
    }
    path = results_io.write("suite", summary, out)
    print(f"wrote {results_io.shown(path)}")
    return summary


def _bullmq(settings: SuiteSettings, out: pathlib.Path | None) -> dict[str, Any]:
    from benchmarks import bullmq_ratio

    return bullmq_ratio.main(jobs=settings.bullmq_jobs, out=out)


def _batch(settings: SuiteSettings, out: pathlib.Path | None) -> dict[str, Any]:
    from benchmarks import batch

    return batch.main(instances=settings.batch_instances, out=out)


def _figures(results: dict[str, dict[str, Any] | None], name: str) -> dict[str, Any] | None:
    result = results.get(name)
    return None if result is None else result["figures"]


def evaluate(results: dict[str, dict[str, Any] | None]) -> list[Target]:
    """Each target of issue #8 with its measured value, met or not (None: not run)."""
    targets: list[Target] = []
    interp = results.get("interpreter")
    if interp is not None:
        rows = {row["scenario"]: row for row in interp["rows"]}
        rate = rows["hello: event transitions"]["steps_per_s"]
        targets.append(
            Target(
                "interpreter: hello transitions", f"{rate:,.0f}/s", ">= 50,000/s", rate >= 50_000
            )
        )
    hello, dbos = _figures(results, "hello"), _figures(results, "peer-dbos")
    if hello is not None and dbos is not None:
        ratio = hello["completions_per_s"] / dbos["completions_per_s"]
        targets.append(
            Target(
                "hello vs DBOS, memory driver",
                f"{hello['completions_per_s']:,.0f}/s vs {dbos['completions_per_s']:,.1f}/s"
                f" = {ratio:.1f}x",
                ">= 50x",
                ratio >= 50,
            )
        )
    else:
        targets.append(Target("hello vs DBOS, memory driver", "not run", ">= 50x", None))
    trans = _figures(results, "transitions")
    if trans is not None:
        targets.append(
            Target(
                "durable event application vs batched asyncpg",
                f"{trans['engine_events_per_s']:,.0f}/s vs {trans['asyncpg_batched_per_s']:,.0f}/s"
                f" = {trans['ratio']:.1%}",
                ">= 25%",
                trans["ratio"] >= 0.25,
            )
        )
    bullmq = _figures(results, "bullmq")
    if bullmq is not None:
        targets.append(
            Target(
                "BullMQ driver vs bullmq package",
                f"{bullmq['ours_jobs_per_s']:,.0f}/s vs "
                f"{bullmq['reference_best_jobs_per_s']:,.0f}/s = {bullmq['ratio']:.1%}",
                ">= 70%",
                bullmq["ratio"] >= 0.7,
            )
        )
    lat = _figures(results, "latency")
    if lat is not None:
        half = "max_rate_per_s" in lat
        targets.append(
            Target(
                "p99 enqueue -> committed step" + (" at half the max rate" if half else ""),
                f"{lat['p99_ms']:.1f} ms at {lat['rate']:,.0f}/s"
                + (f" (max {lat['max_rate_per_s']:,.0f}/s)" if half else ""),
                "<= 25 ms",
                lat["p99_ms"] <= 25 and half,
            )
        )
    batch = _figures(results, "batch")
    if batch is not None:
        per = batch["bytes_per_resident"]
        targets.append(
            Target(
                f"{batch['instances_done']:,.0f}-instance batch; memory per resident instance",
                f"done in {batch['seconds']:,.0f} s, peak RSS {batch['peak_rss_mb']:,.0f} MB;"
                f" {per:,.0f} B/resident",
                "completes; <= 5 KB",
                bool(batch["meets_target"]),
            )
        )
    return targets


def table(targets: list[Target]) -> list[str]:
    width = max((len(t.name) for t in targets), default=10)
    mwidth = max((len(t.measured) for t in targets), default=10)
    lines = [f"{'target':<{width}}  {'measured':<{mwidth}}  {'goal':<18}  met"]
    for t in targets:
        met = "-" if t.met is None else ("yes" if t.met else "NO")
        lines.append(f"{t.name:<{width}}  {t.measured:<{mwidth}}  {t.goal:<18}  {met}")
    return lines
