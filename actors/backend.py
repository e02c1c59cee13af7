"""The Ray backend: the engine's shards and pools as Ray actors.

``RayBackend.start`` joins the Ray cluster at ``address`` (``RAY_ADDRESS``), or one
already initialised in this process, else starts a local Ray bound to 127.0.0.1 with
its dashboard off; it then creates (or attaches to) the named shard and pool actors
(see :mod:`statefleet.actors.factory`). The engine loop (``engine/runtime/engine.py``)
runs in this process on top of it, with the queue client.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray._private import ray_constants

from statefleet.actors.factory import (
    POOL_RESOURCE,
    SHARD_RESOURCE,
    ResourceMode,
    make_pools,
    make_shards,
)
from statefleet.actors.process import ActorProcess
from statefleet.engine.handlers import HandlerFactory
from statefleet.engine.logging_setup import LogSettings
from statefleet.engine.ports.backend import BackendUnavailable, PoolReply, ShardReply, TaskClaim
from statefleet.engine.ports.queue import EventJobData, TaskJobData
from statefleet.engine.runtime.settings import EngineSettings
from statefleet.engine.tracing import TraceSettings

__all__ = ["RayBackend", "RayUnavailable", "init_ray", "loopback_only"]

log = logging.getLogger(__name__)


class RayUnavailable(BackendUnavailable):
    """Ray cannot host the engine as configured; the message says what to change."""


def loopback_only() -> None:
    """Makes the Ray this process starts listen and advertise on 127.0.0.1 only.

    Ray resolves "127.0.0.1" given as a node address to the machine's external
    address and binds its GCS and raylet on every interface, unless its cluster mode is
    off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, its switch for single-machine use).
    The variable is read when Ray is imported, so the imported constant is set too;
    the processes Ray spawns read the variable.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def init_ray(address: str | None, settings: EngineSettings, resources: ResourceMode) -> bool:
    """Joins ``address`` or starts a local Ray; returns whether this call started one.

    A local Ray binds every listener to 127.0.0.1 and runs no dashboard (Ray's APIs
    have no authorization worth trusting), and declares enough of the custom resources
    for this engine's shards and pools.
    """
    if ray.is_initialized():
        return False
    if address:
        # A cluster on loopback addresses (one machine): this driver attaches to the
        # node at that address, which Ray would otherwise look for on the machine's
        # external address.
        host = address.removeprefix("ray://").rpartition(":")[0]
        ray.init(
            address=address,
            log_to_driver=False,
            namespace="statefleet",
            _node_ip_address=host if host.startswith("127.") else None,  # None: Ray's choice
        )
        return False
    loopback_only()
    declared = (
        {}
        if resources == "off"
        else {
            SHARD_RESOURCE: float(settings.shards),
            POOL_RESOURCE: float(settings.pools),
        }
    )
    ray.init(
        include_dashboard=False,
        log_to_driver=False,
        namespace="statefleet",
        resources=declared,
    )
    return True


def _check_resources(resources: ResourceMode) -> None:
    if resources != "require":
        return
    available = ray.cluster_resources()
    missing = [name for name in (SHARD_RESOURCE, POOL_RESOURCE) if not available.get(name)]
    if missing:
        raise RayUnavailable(
            f"the Ray cluster declares no {' / '.join(missing)} resource, so no shard or "
            "pool could ever be placed: start its nodes with e.g. "
            f'`ray start ... --resources=\'{{"{SHARD_RESOURCE}": 4, "{POOL_RESOURCE}": 2}}\'`'
            " (the Helm chart declares them), or set STATEFLEET_RAY_RESOURCES=wait for an "
            "autoscaling cluster, or =off to place actors anywhere"
        )


@dataclass
class RayBackend:
    """Handles of the shard and pool actors; implements the engine's ``Backend`` port."""

    shards: list[Any]
    pools: list[Any]
    started_ray: bool = False
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def start(
        cls,
        dsn: str,
        handlers: HandlerFactory,
        settings: EngineSettings,
        *,
        address: str | None = None,
        resources: ResourceMode = "require",
        log: LogSettings | None = None,
        trace: TraceSettings | None = None,
    ) -> RayBackend:
        """Joins or starts Ray and creates (or finds) the actors; see the module docstring.

        Raises:
            RayUnavailable: ``resources="require"`` and the cluster declares none.
        """
        started = init_ray(address, settings, resources)
        try:
            _check_resources(resources)
            process = ActorProcess(log, trace, settings.gc_gen0_threshold)
            shards = make_shards(dsn, settings, resources, process)
            pools = make_pools(dsn, handlers, settings, resources, process)
        except BaseException:
            if started:
                ray.shutdown()
            raise
        return cls(shards, pools, started)

    @property
    def shard_count(self) -> int:
        return len(self.shards)

    @property
    def pool_count(self) -> int:
        return len(self.pools)

    async def apply(
        self, shard: int, events: Sequence[EventJobData], claim: TaskClaim | None = None
    ) -> ShardReply:
        reply: ShardReply = await self.shards[shard].apply.remote(list(events), claim)
        return reply

    async def run_tasks(self, pool: int, jobs: Sequence[TaskJobData]) -> PoolReply:
        reply: PoolReply = await self.pools[pool].run_tasks.remote(list(jobs))
        return reply

    async def ready(self) -> list[str]:
        """Every actor answers once its process is up and its pool and handlers are built.

        Ray creates actors asynchronously: without this, the first batch of a fresh
        cluster waits for the actors' processes to start and import the engine (about a
        second of CPU each, on the same cores as the batch). Returns the pools' lease
        owners, in index order.
        """
        replies = await asyncio.gather(
            *(shard.warm.remote() for shard in self.shards),
            *(pool.warm.remote() for pool in self.pools),
        )
        owners: list[str] = replies[len(self.shards) :]
        return owners

    async def stats(self) -> list[dict[str, int]]:
        stats: list[dict[str, int]] = await asyncio.gather(
            *(shard.stats.remote() for shard in self.shards)
        )
        return stats

    async def pids(self) -> tuple[list[int], list[int]]:
        """Process ids of the shard and pool actors (crash tests kill them)."""
        shards = await asyncio.gather(*(a.pid.remote() for a in self.shards))
        pools = await asyncio.gather(*(a.pid.remote() for a in self.pools))
        return list(shards), list(pools)

    async def close(self) -> None:
        """Detaches from the actors; shuts Ray down (and with it the actors) if it started it.

        Actors on a shared cluster keep running: other workers of the deployment use
        them (see ``factory``). :meth:`destroy` removes them.
        """
        if self._closed:
            return
        self._closed = True
        if self.started_ray:
            await self._close_actors()
            ray.shutdown()

    async def destroy(self) -> None:
        """Closes and kills the actors for good (tests and benchmarks)."""
        if self._closed:
            return
        self._closed = True
        await self._close_actors()
        for actor in [*self.shards, *self.pools]:
            ray.kill(actor, no_restart=True)
        if self.started_ray:
            ray.shutdown()

    async def _close_actors(self) -> None:
        actors = [*self.shards, *self.pools]
        await asyncio.gather(*(a.close.remote() for a in actors), return_exceptions=True)
