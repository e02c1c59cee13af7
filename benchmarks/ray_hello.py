"""Hello-workflow completions per second: the engine on Ray actors vs in this process.

``python -m benchmarks.ray_hello -n 1000 -n 10000`` runs each batch size twice on fresh
databases, the same engine loop over each backend: Ray actors on a local Ray (started
once, bound to 127.0.0.1) and the in-process backend, memory queue, e-mail a no-op.
Times from the first start to the last instance done; the start itself (inserting the
instances) is inside the measurement. Prints the ratio Ray / in-process. Postgres is
``DATABASE_URL`` (a role with CREATEDB) or a throwaway server.
"""

from __future__ import annotations

import argparse
import time
import warnings

import uvloop

from benchmarks import common, machine_info, pg
from statefleet.engine.ports.backend import Backend
from statefleet.engine.runtime import Engine, EngineSettings, LocalBackend, StartRequest
from statefleet.engine.runtime.definitions import deploy_definition
from statefleet.engine.store.db import create_pool

HANDLERS = "statefleet.registries:hello_noop"


async def run(dsn: str, n: int, settings: EngineSettings, backend_name: str) -> float:
    queue = common.CountingQueue()
    pool = await create_pool(dsn, max_size=4)
    backend: Backend
    if backend_name == "ray":
        from statefleet.actors.backend import RayBackend

        backend = RayBackend.start(dsn, HANDLERS, settings, resources="off")
    else:
        backend = LocalBackend(pool, HANDLERS, settings)
    engine = Engine(pool, queue, backend, settings)
    try:
        await engine.start()
        async with pool.acquire() as connection:
            definition = await deploy_definition(connection, common.TENANT, common.HELLO)
        began = time.perf_counter()
        for offset in range(0, n, 1_000):
            chunk = [StartRequest()] * min(1_000, n - offset)
            await engine.runtime.start_many(common.TENANT, definition.id, chunk)
        elapsed = await common.wait_done(pool, n, began)
        stats = await engine.stats()
        direct = engine.delivered_direct
        jobs = sum(queue.enqueued.values())
    finally:
        await engine.stop()
        destroy = getattr(backend, "destroy", None)
        await (destroy() if destroy is not None else backend.close())
        await queue.close()
        await pool.close()
    peak = max(s["peak_resident"] for s in stats)
    print(
        f"{backend_name:>6} {n:>7} instances: {elapsed:6.2f} s, {n / elapsed:7.0f} completions/s,"
        f" shards={settings.shards} peak resident/shard={peak}; broker jobs per instance"
        f" {jobs / n:.2f}, events delivered direct {direct / n:.2f}"
    )
    return n / elapsed


async def measure(admin_dsn: str, n: int, settings: EngineSettings, backend: str) -> float:
    async with pg.fresh_database(admin_dsn) as dsn:
        return await run(dsn, n, settings, backend)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_hello")
    parser.add_argument("-n", type=int, action="append", help="instances (repeatable)")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ray

    print(machine_info.banner(machine_info.describe()))
    settings = EngineSettings()
    from statefleet.actors.backend import loopback_only

    loopback_only()
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        with pg.server() as dsn:
            for n in args.n or [1_000, 10_000]:
                # uvloop, as ``statefleet worker`` runs the engine.
                ray_rate = uvloop.run(measure(dsn, n, settings, "ray"))
                local_rate = uvloop.run(measure(dsn, n, settings, "local"))
                print(f"       ray / in-process: {ray_rate / local_rate:.0%} (target >= 70%)")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
