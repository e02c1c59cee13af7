"""The engine on Ray: shard and pool actors, and the dispatcher in this process.

``RayEngine.start`` joins the Ray cluster named by ``RAY_ADDRESS`` (or one already
initialised in this process), else starts a local Ray; it creates the shards and
pools and starts the dispatcher on the given queue client. The queue client stays
in this process; the actors reach only Postgres.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import ray

from statefleet.actors.config import ActorSettings, RegistryFactory
from statefleet.actors.dispatcher import Dispatcher
from statefleet.actors.factory import make_pools, make_shards
from statefleet.engine.ports.queue import Queue
from statefleet.engine.store.db import create_pool

__all__ = ["RayEngine"]

log = logging.getLogger(__name__)


@dataclass
class RayEngine:
    """A running actor layer; build it with :meth:`start`, end it with :meth:`stop`."""

    pool: asyncpg.Pool[Any]
    dispatcher: Dispatcher
    shards: list[Any]
    pools: list[Any]
    settings: ActorSettings
    started_ray: bool = False
    _stopped: bool = field(default=False, repr=False)

    @classmethod
    async def start(
        cls,
        dsn: str,
        queue: Queue,
        registry_factory: RegistryFactory,
        settings: ActorSettings | None = None,
    ) -> RayEngine:
        settings = settings or ActorSettings.from_env()
        started_ray = False
        if not ray.is_initialized():
            # With RAY_ADDRESS set, ray.init() joins that cluster; otherwise it starts one.
            ray.init(
                address=os.environ.get("RAY_ADDRESS") or None,
                include_dashboard=False,
                log_to_driver=False,
            )
            started_ray = True
        shards = make_shards(dsn, settings)
        pools = make_pools(dsn, registry_factory, settings)
        pool = await create_pool(dsn, max_size=4)
        dispatcher = Dispatcher(pool, queue, shards, pools, settings)
        await dispatcher.start()
        return cls(pool, dispatcher, shards, pools, settings, started_ray)

    async def stats(self) -> list[dict[str, int]]:
        """Each shard's counters (resident checkpoints, peak, actors, commits)."""
        stats: list[dict[str, int]] = await asyncio.gather(
            *(shard.stats.remote() for shard in self.shards)
        )
        return stats

    async def stop(self) -> None:
        """Stops the dispatcher, closes and kills the actors; shuts Ray down if it started it."""
        if self._stopped:
            return
        self._stopped = True
        await self.dispatcher.stop()
        actors = [*self.shards, *self.pools]
        await asyncio.gather(*(a.close.remote() for a in actors), return_exceptions=True)
        for actor in actors:
            ray.kill(actor, no_restart=True)
        await self.pool.close()
        if self.started_ray:
            ray.shutdown()
