"""The in-process backend: the engine's shards and pools as plain objects in this process.

For one process (tests, ``statefleet api --allow-memory``, the in-process benchmarks):
the same :class:`ShardHost` and :class:`PoolHost` the Ray backend turns into actors,
called directly, sharing this process's database pool and machine cache.
"""

from __future__ import annotations

from collections.abc import Sequence

from statefleet.engine.handlers.registry import HandlerFactory
from statefleet.engine.ports.backend import PoolReply, ShardReply, TaskClaim
from statefleet.engine.ports.queue import EventJobData, TaskJobData
from statefleet.engine.runtime.hosts import PoolHost, ShardHost
from statefleet.engine.runtime.machines import MachineCache
from statefleet.engine.runtime.settings import EngineSettings
from statefleet.engine.store.db import Pool

__all__ = ["LocalBackend"]


class LocalBackend:
    """``settings.shards`` shards and ``settings.pools`` pools on one shared pool."""

    def __init__(
        self,
        pool: Pool,
        handlers: HandlerFactory,
        settings: EngineSettings,
    ) -> None:
        machines = MachineCache()
        self.shards = [
            ShardHost(i, pool, settings.shard(), machines=machines) for i in range(settings.shards)
        ]
        self.pools = [
            PoolHost(i, pool, handlers, settings.executor()) for i in range(settings.pools)
        ]

    @property
    def shard_count(self) -> int:
        return len(self.shards)

    @property
    def pool_count(self) -> int:
        return len(self.pools)

    async def apply(
        self, shard: int, events: Sequence[EventJobData], claim: TaskClaim | None = None
    ) -> ShardReply:
        return await self.shards[shard].apply(events, claim)

    async def run_tasks(self, pool: int, jobs: Sequence[TaskJobData]) -> PoolReply:
        return await self.pools[pool].run_tasks(jobs)

    async def ready(self) -> list[str]:
        for host in self.shards:
            await host.warm()
        return [await pool_host.warm() for pool_host in self.pools]

    async def stats(self) -> list[dict[str, int]]:
        return [await shard.stats() for shard in self.shards]

    async def close(self) -> None:
        for host in self.shards:
            await host.close()
        for pool_host in self.pools:
            await pool_host.close()
