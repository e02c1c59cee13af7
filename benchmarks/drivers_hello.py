"""Hello-workflow completions per second under each queue driver, in one process.

``python -m benchmarks.drivers_hello -n 1000 [--driver memory --driver bullmq ...]``
starts N hello-workflow instances on a fresh database and times until all are done:
one process holding the engine loop and an API-side service of its own, which
publishes through the driver as an API process does (so each hello's e-mail task is a
job on the driver; its start is applied as the instance is created), the EMAIL
handler a no-op. BullMQ runs on ``REDIS_URL`` or a throwaway ``redis-server``; Cloud Tasks on
``WORKFLOW_CLOUDTASKS_EMULATOR_HOST`` or a throwaway emulator, pushing HTTP to the app
under uvicorn in the same process. Postgres is ``DATABASE_URL`` (a role with CREATEDB)
or a throwaway server. The start (inserting the instances) is inside the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg

from benchmarks import machine_info
from benchmarks.common import wait_done
from statefleet.engine.handlers import HandlerRegistry, TaskContext
from statefleet.engine.runtime import EngineSettings, StartRequest, WorkflowService
from statefleet.engine.store import migrate

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "tests" / "integration"
HELLO = json.loads((ROOT / "tests" / "fixtures" / "hello-workflow.json").read_text())
DRIVERS = ("memory", "bullmq", "cloudtasks")
TENANT = "bench"
# Production-like batching, with a sweep that stays out of the way of a short run.
SETTINGS = EngineSettings(sweep_interval_ms=5_000, sweep_grace_ms=30_000)

if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from postgres_server import running_postgres

    with running_postgres() as pg:
        yield pg.dsn


@contextlib.contextmanager
def broker(driver: str) -> Iterator[str | None]:
    """The Redis URL, the emulator host, or nothing (memory)."""
    if driver == "bullmq":
        url = os.environ.get("REDIS_URL", "").strip()
        if url:
            yield url
            return
        from redis_server import running_redis

        with running_redis() as server:
            yield server.url
    elif driver == "cloudtasks":
        host = os.environ.get("WORKFLOW_CLOUDTASKS_EMULATOR_HOST", "").strip()
        if host:
            yield host
            return
        from cloudtasks_emulator import running_emulator

        with running_emulator() as started:
            yield started
    else:
        yield None


async def noop_email(task: TaskContext) -> Any:
    return {"accepted": [task.input["to"]]}


@contextlib.asynccontextmanager
async def engine(driver: str, dsn: str, where: str | None) -> AsyncIterator[WorkflowService]:
    """The engine under ``driver`` and a front door of its own, as an API process is: the
    hello's e-mail task goes through the driver (``driver_support.front_door``)."""
    from driver_support import front_door

    registry = HandlerRegistry()
    registry.register("EMAIL", noop_email)
    if driver == "memory":
        from runtime_support import running_engine

        async with running_engine(dsn, registry, settings=SETTINGS) as memory:
            yield front_door(memory.pool, memory.engine)
    elif driver == "bullmq":
        from driver_support import bullmq_engine

        assert where is not None
        async with bullmq_engine(dsn, registry, where, settings=SETTINGS) as bull:
            yield bull.service  # front_door already
    else:
        from cloudtasks_support import cloudtasks_engine

        assert where is not None
        async with cloudtasks_engine(dsn, registry, where, settings=SETTINGS) as cloud:
            yield front_door(cloud.pool, cloud.engine)


async def run(driver: str, admin_dsn: str, where: str | None, n: int) -> float:
    name = f"statefleet_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    try:
        await migrate(dsn)
        async with engine(driver, dsn, where) as service:
            await service.deploy(TENANT, HELLO)
            began = time.perf_counter()
            for offset in range(0, n, 1_000):
                chunk = [StartRequest()] * min(1_000, n - offset)
                await service.start_many(TENANT, "hello-workflow", chunk)
            elapsed = await wait_done(service.pool, n, began)
        rate = n / elapsed
        print(f"{driver:>10}: {n:>7} instances in {elapsed:6.2f} s, {rate:7.0f} completions/s")
        return rate
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drivers_hello")
    parser.add_argument("-n", type=int, default=1_000, help="instances per driver")
    parser.add_argument("--driver", choices=DRIVERS, action="append", help="(repeatable)")
    args = parser.parse_args(argv)
    print(machine_info.banner(machine_info.describe()))
    with postgres() as dsn:
        for driver in args.driver or DRIVERS:
            with broker(driver) as where:
                asyncio.run(run(driver, dsn, where, args.n))


if __name__ == "__main__":
    main()
