"""Wide parallel states: one event to N regions, and a canary beside a heavy step.

1. **One event to N regions** (pure interpreter, no I/O): a parallel state of N
   regions, each moving ``a -> b`` on ``GO``; the time of that one ``transition`` from
   a restored snapshot, median of a few runs, for N = 100, 500, 1,000, 2,000. Before
   the work per region was made linear, 1,000 regions took 24 s and 2,000 took 304 s.
2. **A canary beside a heavy step** (Postgres, the engine loop, one shard): a toggle
   instance receives ``FLIP`` events at a fixed rate while, on the same shard, a
   1,000-region instance takes an event whose eventless transitions would loop for
   many seconds; its step budget (``STATEFLEET_STEP_TIME_BUDGET_MS``, 1 s) fails it.
   The canary's enqueue -> committed step latencies are reported for the events sent
   while the heavy step runs, twice: with big machines stepping in a worker thread
   (the engine's way, ``THREAD_MIN_STATES``) and with every step inline in the
   shard's event loop, for comparison.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from benchmarks import common, machine_info, pg
from benchmarks.latency import percentile
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.interpreter import Snapshot, load_machine
from statefleet.engine.ports.queue import event_job
from statefleet.engine.runtime import EngineSettings, InstanceRuntime, Publisher, StartRequest
from statefleet.engine.runtime import instances as instances_module
from statefleet.engine.runtime.definitions import deploy_definition
from statefleet.engine.store.db import create_pool

SIZES = (100, 500, 1_000, 2_000)
HEAVY_REGIONS = 1_000


def wide(regions: int, *, looping: bool = False) -> dict[str, Any]:
    """N regions moving ``a -> b`` on GO; ``looping``: each ``b`` counts forever."""
    b: dict[str, Any] = {}
    if looping:
        b["always"] = {
            "guard": {"expr": "context.n < 1000000000"},
            "actions": {"type": "assign", "path": "n", "value": {"$expr": "context.n + 1"}},
        }
    states = {
        f"r{i}": {"initial": "a", "states": {"a": {"on": {"GO": "b"}}, "b": b}}
        for i in range(regions)
    }
    name = "heavy" if looping else f"wide-{regions}"
    return {"id": name, "type": "parallel", "context": {"n": 0}, "states": states}


def one_event(regions: int, repeats: int = 5) -> float:
    """Median ms of one GO to ``regions`` regions, from a snapshot restored from JSON."""
    machine = load_machine(wide(regions))
    start = Snapshot.from_dict(machine.initial_state().snapshot.as_dict())
    event = {"type": "GO", "payload": {}}
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        step = machine.transition(start, event)
        times.append((time.perf_counter() - began) * 1000)
        if step.snapshot.value != {f"r{i}": "b" for i in range(regions)}:
            raise RuntimeError("the regions did not all move")
    return statistics.median(times)


def _send_on_schedule(
    loop: asyncio.AbstractEventLoop,
    queue: MemoryQueue,
    jobs: list[tuple[str, Any]],
    rate: float,
    sent: dict[str, float],
) -> None:
    """Enqueues ``jobs`` at ``rate`` from a thread of its own (open loop).

    The send time is taken here, on schedule, even when the event loop is busy (the
    inline variant blocks it for the whole heavy step): a blocked loop then shows as
    latency instead of silently delaying the arrivals.
    """
    began = time.perf_counter()
    for k, (event_id, job) in enumerate(jobs):
        delay = began + k / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent[event_id] = time.time()
        asyncio.run_coroutine_threadsafe(queue.enqueue(job), loop)


async def canary(dsn: str, rate: float, seconds: float, heavy_regions: int) -> dict[str, float]:
    """The canary's latencies while the heavy step runs on the same (single) shard."""
    pool = await create_pool(dsn, max_size=8)
    queue = MemoryQueue()
    engine = common.local_engine(pool, queue, settings=EngineSettings(shards=1))

    def job(instance_id: Any, event_id: str, event_type: str) -> Any:
        return event_job(
            tenant_id=common.TENANT,
            instance_id=str(instance_id),
            event_id=event_id,
            event_type=event_type,
        )

    async def applied() -> int:
        count: int = await pool.fetchval("SELECT count(*) FROM workflow_events WHERE seq > 0")
        return count

    try:
        (toggle,) = await common.toggle_instances(pool, 1)
        runtime = InstanceRuntime(pool, Publisher(pool, MemoryQueue()))
        async with pool.acquire() as connection:
            definition = await deploy_definition(
                connection, common.TENANT, wide(heavy_regions, looping=True)
            )
        (heavy,) = await runtime.start_many(
            common.TENANT, definition.id, [StartRequest()], start_event=None
        )
        await engine.start()
        # A first, unhandled event activates the heavy instance on its shard, as its
        # start event would: from then on the shard knows its machine is big.
        await queue.enqueue(job(heavy.instance_id, "warm-up", "PING"))
        while await applied() < 1:
            await asyncio.sleep(0.01)
        total = max(1, round(rate * seconds))
        jobs = [(f"canary-{k}", job(toggle, f"canary-{k}", "FLIP")) for k in range(total)]
        heavy_at = round(total * 0.2)  # some canary events before, most during and after
        jobs.insert(heavy_at, ("heavy", job(heavy.instance_id, "heavy", "GO")))
        sent: dict[str, float] = {}
        sender = asyncio.get_running_loop().run_in_executor(
            None, _send_on_schedule, asyncio.get_running_loop(), queue, jobs, rate, sent
        )
        heavy_end = None
        deadline = time.perf_counter() + 60 + seconds
        while heavy_end is None or not sender.done() or await applied() < total + 2:
            if heavy_end is None and "heavy" in sent:
                status = await pool.fetchval(
                    "SELECT status FROM workflow_instances WHERE id = $1", heavy.instance_id
                )
                if status != "running":
                    heavy_end = time.time()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {await applied()} of {total + 2} events applied")
            await asyncio.sleep(0.005)
        await sender
        rows = await pool.fetch(
            "SELECT event_id, extract(epoch FROM created_at)::float8 AS at, error "
            "FROM workflow_events WHERE seq > 0"
        )
    finally:
        await engine.close()
        await queue.close()
        await pool.close()
    at = {r["event_id"]: r["at"] for r in rows}
    heavy_error = next(r["error"] for r in rows if r["event_id"] == "heavy")
    heavy_start = sent["heavy"]
    canaries = {e: t for e, t in sent.items() if e != "heavy"}
    during = sorted(
        (at[e] - t) * 1000 for e, t in canaries.items() if heavy_start <= t <= heavy_end
    )
    every = sorted((at[e] - t) * 1000 for e, t in canaries.items())
    return {
        "heavy_step_ms": round((heavy_end - heavy_start) * 1000, 1),
        "heavy_failed_by_budget": float(bool(heavy_error and "step budget" in heavy_error)),
        "canary_events_during": float(len(during)),
        "canary_p50_ms": round(percentile(during, 50), 2),
        "canary_p99_ms": round(percentile(during, 99), 2),
        "canary_max_ms": round(during[-1], 2) if during else float("nan"),
        "canary_p99_all_ms": round(percentile(every, 99), 2),
    }


async def canaries(
    admin_dsn: str, rate: float, seconds: float, heavy_regions: int
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    default = instances_module.THREAD_MIN_STATES
    for mode, threshold in (("thread", default), ("inline", 10**9)):
        instances_module.THREAD_MIN_STATES = threshold
        try:
            async with pg.fresh_database(admin_dsn) as dsn:
                out[mode] = await canary(dsn, rate, seconds, heavy_regions)
        finally:
            instances_module.THREAD_MIN_STATES = default
    return out


def main(
    *,
    sizes: tuple[int, ...] = SIZES,
    rate: float = 100.0,
    seconds: float = 3.0,
    heavy: int = HEAVY_REGIONS,
    out: Any = None,
) -> dict[str, Any]:
    """``heavy``: regions of the heavy instance (64 states or more steps in a thread)."""
    info = machine_info.describe()
    figures: dict[str, float] = {}
    lines = ["one event to N parallel regions (pure interpreter, one core, median of 5)"]
    lines.append(f"{'regions':>8} {'ms':>9} {'us/region':>10}")
    for n in sizes:
        ms = one_event(n)
        figures[f"event_ms_{n}"] = round(ms, 2)
        lines.append(f"{n:>8,} {ms:>9.2f} {ms * 1000 / n:>10.2f}")
    with pg.server() as admin_dsn:
        modes = asyncio.run(canaries(admin_dsn, rate, seconds, heavy))
    lines.append(
        f"canary on the same shard: FLIP at {rate:g}/s for {seconds:g} s; a "
        f"{heavy:,}-region step that loops until its time budget fails it"
    )
    lines.append(
        f"{'steps':>8} {'heavy ms':>9} {'failed':>7} {'during':>7} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'p99 all':>8}"
    )
    for mode, got in modes.items():
        for key, value in got.items():
            figures[f"{mode}_{key}"] = value
        lines.append(
            f"{mode:>8} {got['heavy_step_ms']:>9.0f} "
            f"{'yes' if got['heavy_failed_by_budget'] else 'NO':>7} "
            f"{got['canary_events_during']:>7.0f} {got['canary_p50_ms']:>8.2f} "
            f"{got['canary_p99_ms']:>8.2f} {got['canary_max_ms']:>8.2f} "
            f"{got['canary_p99_all_ms']:>8.2f}"
        )
    params = {"sizes": list(sizes), "rate": rate, "seconds": seconds, "heavy": heavy}
    return common.finish("regions", info, params, figures, lines, out)
