"""A task worker that claims one task, says so, and hangs until it is killed.

Run as a separate process by the lease-expiry test, which SIGKILLs it: no
cleanup code runs, exactly as when a machine dies mid-task.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.handlers import HandlerRegistry, TaskContext
from statefleet.engine.runtime import Publisher, TaskRunner
from statefleet.engine.store.db import create_pool


async def main(dsn: str, tenant_id: str, task_id: str) -> None:
    async def hang(task: TaskContext) -> Any:
        print("claimed", flush=True)
        await asyncio.Event().wait()

    registry = HandlerRegistry()
    registry.register("SLOW", hang)
    pool = await create_pool(dsn)
    runner = TaskRunner(pool, registry, Publisher(pool, MemoryQueue()), worker_id="doomed")
    await runner.run(tenant_id, task_id)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
