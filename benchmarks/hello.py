"""Hello-workflow completions per second, end to end, memory driver, one process.

The engine loop (in-process backend: shards, a pool, the sweeper) on a memory queue, with the
e-mail step a ``NOOP`` handler; ``instances`` hello instances started in chunks of
1,000 (the inserts are inside the measurement); timed until the last one is done.
"""

from __future__ import annotations

import time
from typing import Any

import uvloop

from benchmarks import common, machine_info, pg
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.runtime import StartRequest
from statefleet.engine.runtime.definitions import deploy_definition
from statefleet.engine.store.db import create_pool


async def completions(dsn: str, instances: int, timeout: float) -> dict[str, float]:
    pool = await create_pool(dsn, max_size=8)
    queue = MemoryQueue()
    worker = common.local_engine(pool, queue)
    try:
        async with pool.acquire() as connection:
            definition = await deploy_definition(connection, common.TENANT, common.HELLO)
        await worker.start()
        began = time.perf_counter()
        for offset in range(0, instances, 1_000):
            chunk = [StartRequest()] * min(1_000, instances - offset)
            await worker.runtime.start_many(common.TENANT, definition.id, chunk)
        elapsed = await common.wait_done(pool, instances, began, timeout)
    finally:
        await worker.close()
        await queue.close()
        await pool.close()
    return {"seconds": round(elapsed, 3), "completions_per_s": round(instances / elapsed, 1)}


async def measure(admin_dsn: str, instances: int, timeout: float) -> dict[str, float]:
    async with pg.fresh_database(admin_dsn) as dsn:
        return await completions(dsn, instances, timeout)


def main(*, instances: int = 2_000, timeout: float = 600.0, out: Any = None) -> dict[str, Any]:
    info = machine_info.describe()
    with pg.server() as admin_dsn:
        # uvloop, as ``statefleet worker`` runs the engine.
        figures = uvloop.run(measure(admin_dsn, instances, timeout))
    lines = [
        "hello workflow, memory driver, one process, engine (in-process backend) + NOOP email",
        f"{'instances':>10} {'seconds':>9} {'completions/s':>14}",
        f"{instances:>10,} {figures['seconds']:>9.2f} {figures['completions_per_s']:>14,.0f}",
    ]
    return common.finish("hello", info, {"instances": instances}, figures, lines, out)
