"""A 100,000-instance batch in one process, and the memory one resident instance costs.

Target: the batch completes, and the engine's memory stays bounded: at most 5 KB per
resident instance, and never more resident instances than ``max_resident``.

1. Batch: ``instances`` hello instances through the engine loop on the memory
   driver (e-mail step a no-op, ``hello_noop``), started with ``start_many`` in chunks
   of ``chunk`` (inside the measurement) and timed until the last one is done. The
   process's RSS is read before and after, sampled during the run, and its lifetime
   peak taken from ``getrusage`` (``ru_maxrss``). The memory driver's backlog (the jobs of
   the tasks past the engine's hand-over limit) is part of that peak. The RSS after the run is
   mostly free memory the allocator keeps: it is read again after ``malloc_trim``
   (glibc), and the live objects (``gc.get_objects``) are counted before and after.
2. Resident instances: an :class:`InstanceShard` (the actor layer's host of virtual
   instance actors, without Ray) with ``max_resident`` above ``resident``; ``resident``
   hello instances, created without their start (as a held start leaves them), each
   get it from the shard, which leaves them running (waiting for their e-mail task)
   and resident. ``tracemalloc`` measures the Python memory the
   activation left allocated (after ``gc``), divided by the resident count: the bytes
   one resident instance costs (checkpoint, snapshot, actor, index entries), an upper
   bound since it includes constant leftovers (the commit loops' last batches). The
   memory given back when all are passivated, per resident, is the lower bound. The
   allocation sites are listed.
3. The bound: the same with the default ``max_resident`` (``ShardSettings``): the peak
   resident count and the memory retained after activating ``resident`` instances.

Postgres is ``DATABASE_URL`` or a throwaway server; each part uses a fresh database.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import pathlib
import resource
import time
import tracemalloc
from typing import Any

import asyncpg

from benchmarks import common, machine_info, pg
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.ports.queue import ORCHESTRATOR_QUEUE, TASK_RUNNER_QUEUE, EventJobData
from statefleet.engine.runtime import StartRequest
from statefleet.engine.runtime.definitions import deploy_definition
from statefleet.engine.runtime.instances import START_EVENT, InstanceRuntime
from statefleet.engine.runtime.outbox import CollectingPublisher
from statefleet.engine.runtime.shard import InstanceShard, ShardSettings
from statefleet.engine.store.db import create_pool

TARGET_BYTES = 5 * 1024
DEFAULT_MAX_RESIDENT = ShardSettings().max_resident
MB = 1024 * 1024


def rss_bytes() -> int:
    """The process's resident set size now (``VmRSS``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def trim_malloc() -> None:
    """Hands the C allocator's free memory back to the OS (glibc), when available."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----------------------------------------------------------------------------- batch


async def run_batch(dsn: str, instances: int, chunk: int, timeout: float) -> dict[str, float]:
    pool = await create_pool(dsn, max_size=8)
    queue = MemoryQueue()
    worker = common.local_engine(pool, queue)
    sampled = {"rss": 0, "backlog": 0}

    async def sample() -> None:
        while True:
            sampled["rss"] = max(sampled["rss"], rss_bytes())
            backlog = sum(queue.backend.pending(q) for q in (ORCHESTRATOR_QUEUE, TASK_RUNNER_QUEUE))
            sampled["backlog"] = max(sampled["backlog"], backlog)
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    try:
        async with pool.acquire() as connection:
            definition = await deploy_definition(connection, common.TENANT, common.HELLO)
        await worker.start()
        gc.collect()
        objects_before = len(gc.get_objects())
        before = rss_bytes()
        began = time.perf_counter()
        for offset in range(0, instances, chunk):
            requests = [StartRequest()] * min(chunk, instances - offset)
            await worker.runtime.start_many(common.TENANT, definition.id, requests)
        started = time.perf_counter() - began
        elapsed = await common.wait_done(pool, instances, began, timeout)
        gc.collect()
        objects_after = len(gc.get_objects())
        after = rss_bytes()
        sampled["rss"] = max(sampled["rss"], before, after)
        trim_malloc()
        trimmed = rss_bytes()
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await worker.close()
        await queue.close()
        await pool.close()
    return {
        "instances_done": float(instances),
        "seconds": round(elapsed, 3),
        "start_seconds": round(started, 3),
        "completions_per_s": round(instances / elapsed, 1),
        "rss_before_mb": round(before / MB, 1),
        "rss_after_mb": round(after / MB, 1),
        "rss_after_trim_mb": round(trimmed / MB, 1),
        "rss_sampled_peak_mb": round(sampled["rss"] / MB, 1),
        "peak_rss_mb": round(max(peak_rss_bytes(), sampled["rss"]) / MB, 1),
        "peak_backlog_jobs": float(sampled["backlog"]),
        "live_objects_before": float(objects_before),
        "live_objects_after": float(objects_after),
    }


# ----------------------------------------------------------------------------- shard


class _Clock:
    """A clock the benchmark moves, so passivation happens exactly when asked."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def start_events(
    pool: asyncpg.Pool[Any], definition_id: Any, count: int, chunk: int
) -> list[EventJobData]:
    """Creates ``count`` hello instances without their start (as a held start leaves
    them); returns the start events a shard then applies."""
    runtime = InstanceRuntime(pool, CollectingPublisher())
    ids: list[str] = []
    for offset in range(0, count, chunk):
        requests = [StartRequest()] * min(chunk, count - offset)
        results = await runtime.start_many(common.TENANT, definition_id, requests, start_event=None)
        ids.extend(str(r.instance_id) for r in results)
    return [EventJobData(common.TENANT, i, f"start-{i}", START_EVENT, {}) for i in ids]


async def activate(shard: InstanceShard, events: list[EventJobData], chunk: int) -> None:
    """Delivers the events in dispatcher-sized submissions; checks every one applied."""
    for offset in range(0, len(events), chunk):
        result = await shard.submit(events[offset : offset + chunk])
        wrong = [o.outcome for o in result.outcomes if o.outcome != "applied"]
        if wrong:
            raise RuntimeError(f"start events not applied: {wrong[:5]}")


async def resident_memory(
    dsn: str, resident: int, max_resident: int, chunk: int, *, sites: int = 0
) -> dict[str, Any]:
    """Activates ``resident`` instances in a shard; what the residents cost, by tracemalloc."""
    pool = await create_pool(dsn, max_size=4)
    clock = _Clock()
    settings = ShardSettings(max_resident=max_resident)
    shard = InstanceShard(
        lambda s: InstanceRuntime(pool, CollectingPublisher(), checkpoints=s),
        settings,
        clock=clock,
    )
    try:
        async with pool.acquire() as connection:
            definition = await deploy_definition(connection, common.TENANT, common.HELLO)
        # Warm-up: prepared statements, the machine cache, the commit loops.
        await activate(shard, await start_events(pool, definition.id, 200, chunk), chunk)
        clock.now += settings.idle_ms / 1000 + 1
        shard.passivate_idle()
        shard.peak_resident = 0
        events = await start_events(pool, definition.id, resident, chunk)

        gc.collect()
        tracemalloc.start()
        base = tracemalloc.take_snapshot() if sites else None
        base_bytes = tracemalloc.get_traced_memory()[0]
        await activate(shard, events, chunk)
        gc.collect()
        active_bytes, peak_bytes = tracemalloc.get_traced_memory()
        active = tracemalloc.take_snapshot() if sites else None
        count = shard.resident_count()
        peak_resident = shard.peak_resident

        clock.now += settings.idle_ms / 1000 + 1
        passivated = shard.passivate_idle()
        gc.collect()
        released_bytes = active_bytes - tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        top: list[tuple[str, float]] = []
        if base is not None and active is not None and count:
            for stat in active.compare_to(base, "lineno")[:sites]:
                frame = stat.traceback[0]
                where = f"{pathlib.Path(frame.filename).name}:{frame.lineno}"
                top.append((where, stat.size_diff / count))
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        await shard.close()
        await pool.close()
    return {
        "activated": len(events),
        "resident": count,
        "peak_resident": peak_resident,
        "passivated": passivated,
        "retained_bytes": active_bytes - base_bytes,
        "released_bytes": released_bytes,
        "traced_peak_bytes": peak_bytes - base_bytes,
        # Upper bound: everything the activation left behind, over the residents.
        "bytes_per_resident": (active_bytes - base_bytes) / count if count else 0.0,
        # Lower bound: what passivating them gave back (the commit loops still hold
        # their last batch of actors and letters, a constant).
        "released_per_resident": released_bytes / count if count else 0.0,
        "sites": top,
    }


# ----------------------------------------------------------------------------- main


async def measure(
    admin_dsn: str,
    instances: int,
    chunk: int,
    resident: int,
    max_resident: int,
    timeout: float,
) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    async with pg.fresh_database(admin_dsn) as dsn:
        batch = await run_batch(dsn, instances, chunk, timeout)
    async with pg.fresh_database(admin_dsn) as dsn:
        unbounded = await resident_memory(dsn, resident, max(resident, 1) * 2, chunk, sites=6)
    async with pg.fresh_database(admin_dsn) as dsn:
        bounded = await resident_memory(dsn, resident, max_resident, chunk)
    return batch, unbounded, bounded


def main(
    *,
    instances: int = 100_000,
    chunk: int = 1_000,
    resident: int = 20_000,
    max_resident: int = DEFAULT_MAX_RESIDENT,
    timeout: float = 3_600.0,
    out: Any = None,
) -> dict[str, Any]:
    """Runs the three parts; ``resident`` instances are activated in each shard part."""
    if instances < 1 or chunk < 1 or resident < 1 or max_resident < 1:
        raise ValueError("instances, chunk, resident and max_resident must be at least 1")
    out = None if out is None else pathlib.Path(out)
    info = machine_info.describe()
    with pg.server() as admin_dsn:
        batch, unbounded, bounded = asyncio.run(
            measure(admin_dsn, instances, chunk, resident, max_resident, timeout)
        )
    per = unbounded["bytes_per_resident"]
    figures: dict[str, float] = {
        **batch,
        "bytes_per_resident": round(per, 1),
        "released_per_resident": round(unbounded["released_per_resident"], 1),
        "resident_measured": float(unbounded["resident"]),
        "resident_retained_mb": round(unbounded["retained_bytes"] / MB, 2),
        "bounded_max_resident": float(max_resident),
        "bounded_peak_resident": float(bounded["peak_resident"]),
        "bounded_resident_after": float(bounded["resident"]),
        "bounded_retained_mb": round(bounded["retained_bytes"] / MB, 2),
        "bounded_bytes_per_resident": round(bounded["bytes_per_resident"], 1),
        "target_bytes_per_resident": float(TARGET_BYTES),
        "meets_target": float(
            batch["instances_done"] == instances
            and per <= TARGET_BYTES
            and bounded["peak_resident"] <= max_resident
        ),
    }
    verdict = "meets" if figures["meets_target"] else "BELOW"
    lines = [
        f"batch: {instances:,} hello instances, one process, engine + memory driver + NOOP "
        f"email, start_many chunks of {chunk:,}",
        f"{'done':>9} {'seconds':>8} {'start s':>8} {'compl/s':>8} "
        f"{'RSS before':>11} {'RSS after':>10} {'peak RSS':>9} {'backlog':>8}",
        f"{int(batch['instances_done']):>9,} {batch['seconds']:>8.1f} "
        f"{batch['start_seconds']:>8.1f} {batch['completions_per_s']:>8,.0f} "
        f"{batch['rss_before_mb']:>8.1f} MB {batch['rss_after_mb']:>7.1f} MB "
        f"{batch['peak_rss_mb']:>6.1f} MB {int(batch['peak_backlog_jobs']):>8,}",
        f"after the run: RSS {batch['rss_after_trim_mb']:.1f} MB once malloc_trim returned "
        f"free memory; live objects {int(batch['live_objects_before']):,} before, "
        f"{int(batch['live_objects_after']):,} after",
        "",
        f"resident instances in an InstanceShard (hello, after its start event), tracemalloc,"
        f" {resident:,} activated",
        f"{'max_resident':>13} {'resident':>9} {'peak':>7} {'retained':>10} "
        f"{'bytes/resident':>15} {'released/resident':>18}",
    ]
    for label, part in ((2 * resident, unbounded), (max_resident, bounded)):
        lines.append(
            f"{label:>13,} {part['resident']:>9,} {part['peak_resident']:>7,} "
            f"{part['retained_bytes'] / MB:>7.2f} MB {part['bytes_per_resident']:>15,.0f} "
            f"{part['released_per_resident']:>18,.0f}"
        )
    lines.append("where a resident instance's bytes are allocated (bytes per resident):")
    for where, size in unbounded["sites"]:
        lines.append(f"  {where:<40} {size:>8,.0f}")
    lines.append(
        f"target: <= {TARGET_BYTES:,} bytes per resident instance, peak resident <= "
        f"max_resident, batch completes: {verdict}"
    )
    parameters = {
        "instances": instances,
        "chunk": chunk,
        "resident": resident,
        "max_resident": max_resident,
    }
    return common.finish("batch", info, parameters, figures, lines, out)


if __name__ == "__main__":
    main()
