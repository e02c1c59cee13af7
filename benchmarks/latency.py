"""Open-loop latency: events arrive at a fixed rate; enqueue to committed step.

The target is stated at half of the maximum rate, so :func:`saturation` measures that
first (``rate="auto"``): every event enqueued at once, the rate at which the same
worker commits them. Then:

``instances`` toggle instances exist; the engine loop on a memory queue applies the
events. FLIP events are enqueued at ``rate`` per second for ``seconds`` on a fixed
schedule (open loop: a slow engine does not slow the arrivals). The send time of each
is recorded (wall clock, just before the enqueue); the latency is the audit row's
``created_at`` minus it. ``created_at`` is ``now()``, the start of the transaction that
commits the step, so the figures slightly understate enqueue-to-commit (by the
duration of that transaction, a few ms).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

from benchmarks import common, machine_info, pg
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.ports.queue import event_job
from statefleet.engine.store.db import create_pool


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


async def arrivals(dsn: str, instances: int, rate: float, seconds: float) -> dict[str, float]:
    pool = await create_pool(dsn, max_size=8)
    queue = MemoryQueue()
    worker = common.local_engine(pool, queue)
    try:
        ids = await common.toggle_instances(pool, instances)
        await worker.start()
        total = max(1, round(rate * seconds))
        sent: dict[str, float] = {}
        began = time.perf_counter()
        for k in range(total):
            delay = began + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event_id = f"lat-{uuid.uuid4().hex}"
            job = event_job(
                tenant_id=common.TENANT,
                instance_id=str(ids[k % len(ids)]),
                event_id=event_id,
                event_type="FLIP",
            )
            sent[event_id] = time.time()
            await queue.enqueue(job)
        offered = time.perf_counter() - began
        deadline = time.perf_counter() + max(30.0, seconds * 5)
        while True:
            applied = await pool.fetchval("SELECT count(*) FROM workflow_events WHERE seq > 0")
            if applied >= total:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {applied} of {total} events applied")
            await asyncio.sleep(0.05)
        rows = await pool.fetch(
            "SELECT event_id, extract(epoch FROM created_at)::float8 AS at "
            "FROM workflow_events WHERE seq > 0"
        )
    finally:
        await worker.close()
        await queue.close()
        await pool.close()
    latencies = sorted((r["at"] - sent[r["event_id"]]) * 1000 for r in rows)
    return {
        "events": float(total),
        "offered_per_s": round(total / offered, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(latencies[-1], 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
    }


async def saturation(dsn: str, instances: int, events: int) -> float:
    """Events per second the worker commits with every event already queued (closed loop)."""
    pool = await create_pool(dsn, max_size=8)
    queue = MemoryQueue()
    worker = common.local_engine(pool, queue)
    try:
        ids = await common.toggle_instances(pool, instances)
        jobs = [
            event_job(
                tenant_id=common.TENANT,
                instance_id=str(ids[k % len(ids)]),
                event_id=f"max-{k}",
                event_type="FLIP",
            )
            for k in range(events)
        ]
        await queue.enqueue_many(jobs)
        began = time.perf_counter()
        await worker.start()
        while True:
            applied = await pool.fetchval("SELECT count(*) FROM workflow_events WHERE seq > 0")
            if applied >= events:
                break
            await asyncio.sleep(0.01)
        return events / (time.perf_counter() - began)
    finally:
        await worker.close()
        await queue.close()
        await pool.close()


async def measure(
    admin_dsn: str, instances: int, rate: float | None, seconds: float
) -> dict[str, float]:
    """``rate=None``: half of the saturation rate measured first, in its own database."""
    figures: dict[str, float] = {}
    if rate is None:
        async with pg.fresh_database(admin_dsn) as dsn:
            maximum = await saturation(dsn, instances, events=20_000)
        figures["max_rate_per_s"] = round(maximum, 1)
        rate = maximum / 2
    async with pg.fresh_database(admin_dsn) as dsn:
        figures.update(await arrivals(dsn, instances, rate, seconds))
    figures["rate"] = round(rate, 1)
    return figures


def main(
    *,
    instances: int = 1_000,
    rate: float | None = None,
    seconds: float = 10.0,
    out: Any = None,
) -> dict[str, Any]:
    """``rate=None`` (the default, ``--rate auto``): half of the measured maximum."""
    info = machine_info.describe()
    with pg.server() as admin_dsn:
        figures = asyncio.run(measure(admin_dsn, instances, rate, seconds))
    params = {"instances": instances, "rate": rate or "auto", "seconds": seconds}
    lines = []
    if "max_rate_per_s" in figures:
        lines.append(
            f"maximum: {figures['max_rate_per_s']:,.0f} events/s committed with all queued; "
            "the open loop runs at half of it"
        )
    lines += [
        f"open loop: {figures['rate']:,.0f} events/s for {seconds} s to {instances:,} instances "
        f"(offered {figures['offered_per_s']:,.0f}/s), enqueue -> committed step",
        f"{'events':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}",
        f"{figures['events']:>8,.0f} {figures['p50_ms']:>8.2f} {figures['p95_ms']:>8.2f} "
        f"{figures['p99_ms']:>8.2f} {figures['max_ms']:>8.2f}",
    ]
    return common.finish("latency", info, params, figures, lines, out)
