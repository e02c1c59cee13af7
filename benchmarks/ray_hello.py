"""Hello-workflow completions per second through the actor layer on a local Ray.

``python -m benchmarks.ray_hello -n 1000 -n 10000`` runs each batch size on a fresh
database: ``DATABASE_URL`` (a role with CREATEDB) or a throwaway server (the test
suite's ``postgres_server`` helper). Times from the first start to the last instance
done; the start itself (inserting the instances) is inside the measurement.
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
from collections.abc import Iterator

import asyncpg

from statefleet.actors.config import ActorSettings
from statefleet.actors.engine import RayEngine
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.runtime import InstanceRuntime, Publisher, StartRequest
from statefleet.engine.runtime.definitions import deploy_definition
from statefleet.engine.store import migrate
from statefleet.engine.store.db import create_pool

ROOT = pathlib.Path(__file__).resolve().parents[1]
HELLO = json.loads((ROOT / "tests" / "fixtures" / "hello-workflow.json").read_text())


@contextlib.contextmanager
def server() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from postgres_server import running_postgres  # type: ignore[import-not-found]

    with running_postgres() as pg:
        yield pg.dsn


async def run(admin_dsn: str, n: int, settings: ActorSettings) -> float:
    name = f"statefleet_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    try:
        await migrate(dsn)
        queue = MemoryQueue()
        pool = await create_pool(dsn, max_size=4)
        engine = await RayEngine.start(dsn, queue, "statefleet.actors.config:hello_noop", settings)
        runtime = InstanceRuntime(pool, Publisher(pool, queue))
        async with pool.acquire() as connection:
            definition = await deploy_definition(connection, "bench", HELLO)
        began = time.perf_counter()
        for offset in range(0, n, 1_000):
            chunk = [StartRequest()] * min(1_000, n - offset)
            await runtime.start_many("bench", definition.id, chunk)
        while True:
            done = await pool.fetchval(
                "SELECT count(*) FROM workflow_instances WHERE status = 'done'"
            )
            if done == n:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - began
        stats = await engine.stats()
        await engine.stop()
        await queue.close()
        await pool.close()
        peak = max(s["peak_resident"] for s in stats)
        print(
            f"{n:>7} instances: {elapsed:6.2f} s, {n / elapsed:7.0f} completions/s, "
            f"shards={settings.shards} peak resident/shard={peak}"
        )
        return n / elapsed
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_hello")
    parser.add_argument("-n", type=int, action="append", help="instances (repeatable)")
    args = parser.parse_args()
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    settings = ActorSettings.from_env()
    try:
        with server() as dsn:
            for n in args.n or [1_000, 10_000]:
                asyncio.run(run(dsn, n, settings))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
