"""The hello workflow on DBOS Transact (PyPI ``dbos``), on the same kind of Postgres.

start -> one step (a no-op "send e-mail") -> wait for a message -> finish: the shape
of statefleet's hello workflow, whose EMAIL task's completion event is the message.
``instances`` workflows are started (async API, one event loop), each is sent its
message once started, and the run is timed until every result is back. DBOS's system
database is a fresh database on the benchmark server. ``dbos`` is imported lazily:
it is only needed for this command.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks import common, machine_info, pg

TOPIC = "hello_sent"


async def workflows(dsn: str, instances: int, timeout: float) -> dict[str, float]:
    from dbos import DBOS, DBOSConfig

    config: DBOSConfig = {
        "name": "statefleet_bench",
        "system_database_url": dsn,
        "log_level": "WARNING",
    }
    DBOS(config=config)

    @DBOS.step()
    async def send_email(to: str) -> str:
        return f"sent to {to}"

    @DBOS.workflow()
    async def hello_workflow(to: str) -> str:
        await send_email(to)
        message = await DBOS.recv_async(TOPIC, timeout_seconds=timeout)
        if message is None:
            raise RuntimeError("no completion message")
        return str(message)

    DBOS.launch()
    try:
        began = time.perf_counter()

        async def one(k: int) -> str:
            handle = await DBOS.start_workflow_async(hello_workflow, f"user{k}@example.com")
            await DBOS.send_async(handle.workflow_id, "done", TOPIC)
            return str(await handle.get_result())

        results = await asyncio.wait_for(
            asyncio.gather(*(one(k) for k in range(instances))), timeout
        )
        elapsed = time.perf_counter() - began
        if results != ["done"] * instances:
            raise RuntimeError("a DBOS workflow returned something else")
    finally:
        DBOS.destroy(destroy_registry=True)
    return {"seconds": round(elapsed, 3), "completions_per_s": round(instances / elapsed, 1)}


async def measure(admin_dsn: str, instances: int, timeout: float) -> dict[str, float]:
    async with pg.fresh_database(admin_dsn, migrated=False) as dsn:
        return await workflows(dsn, instances, timeout)


def main(*, instances: int = 300, timeout: float = 600.0, out: Any = None) -> dict[str, Any]:
    from importlib import metadata

    info = machine_info.describe()
    info["versions"]["dbos"] = metadata.version("dbos")
    with pg.server() as admin_dsn:
        figures = asyncio.run(measure(admin_dsn, instances, timeout))
    lines = [
        "hello workflow on DBOS Transact: start -> step -> recv -> finish, async API",
        f"{'instances':>10} {'seconds':>9} {'completions/s':>14}",
        f"{instances:>10,} {figures['seconds']:>9.2f} {figures['completions_per_s']:>14,.0f}",
    ]
    return common.finish("peer-dbos", info, {"instances": instances}, figures, lines, out)
