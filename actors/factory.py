"""The one place ``ray.remote`` is applied: shard and pool actors with their restart policy.

``max_restarts=-1``: a dead shard or pool is restarted (it starts empty; a shard
reloads its instances from Postgres on their next event). ``max_task_retries=-1``:
a call in flight when its actor died is retried on the restarted actor, which is
safe because applying events and claiming tasks are idempotent.
"""

from __future__ import annotations

from typing import Any

import ray

from statefleet.actors.config import ActorSettings, RegistryFactory
from statefleet.actors.pools import PoolHost
from statefleet.actors.shards import ShardHost
from statefleet.engine.runtime.executor import ExecutorSettings
from statefleet.engine.runtime.shard import ShardSettings
from statefleet.engine.runtime.tasks import TaskRunnerSettings

__all__ = ["make_pools", "make_shards"]

_RESTART: dict[str, Any] = {"max_restarts": -1, "max_task_retries": -1}
# Actors do I/O, not computation: they reserve no CPU, so a 2-core machine can host
# one shard per core plus pools.
_RESOURCES: dict[str, Any] = {"num_cpus": 0}

_Shard = ray.remote(**_RESTART, **_RESOURCES)(ShardHost)
_Pool = ray.remote(**_RESTART, **_RESOURCES)(PoolHost)


def make_shards(dsn: str, settings: ActorSettings) -> list[Any]:
    """Starts ``settings.shards`` shard actors; returns their handles, index order."""
    shard_settings = ShardSettings(
        max_resident=settings.max_resident,
        idle_ms=settings.idle_ms,
        max_batch=settings.shard_commit_batch,
        commit_concurrency=settings.shard_commit_concurrency,
    )
    return [
        _Shard.remote(i, dsn, shard_settings, settings.db_pool_size) for i in range(settings.shards)
    ]


def make_pools(dsn: str, registry_factory: RegistryFactory, settings: ActorSettings) -> list[Any]:
    """Starts ``settings.pools`` executor pool actors; returns their handles."""
    executor_settings = ExecutorSettings(
        default_limit=settings.task_type_limit,
        tasks=TaskRunnerSettings(
            default_lease_ms=settings.task_default_lease_ms,
            lease_margin_ms=settings.task_lease_margin_ms,
        ),
    )
    return [
        _Pool.remote(i, dsn, registry_factory, executor_settings, settings.db_pool_size)
        for i in range(settings.pools)
    ]
