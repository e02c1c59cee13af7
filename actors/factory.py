"""The one place ``ray.remote`` is applied: shard and pool actors, named, with restarts.

- ``max_restarts=-1``: a dead shard or pool is restarted (it starts empty; a shard
  reloads its instances from Postgres on their next event). ``max_task_retries=-1``:
  a call in flight when its actor died is retried on the restarted actor, which is
  safe because applying events and claiming tasks are idempotent.
- Named and detached, in namespace ``statefleet``: the name carries statefleet's
  version, a hash of the database DSN, the index and the count, so every
  ``statefleet worker`` of one deployment attaches to the same actors
  (``get_if_exists``) instead of creating duplicates, and a worker (or a Ray Client
  connection) that goes away leaves them running for the others. Different databases
  or versions never share actors.
- Resources: unless the mode is ``off`` (see :data:`RESOURCE_MODES`), each shard reserves one
  unit of the custom resource ``statefleet_shard`` and each pool one of
  ``statefleet_pool``. Nodes declare how many they host (``ray start --resources``,
  the Helm chart's worker groups), so the KubeRay autoscaler sees pending actors and
  adds nodes. Actors reserve no CPU either way: they wait on I/O.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import ray

from statefleet import __version__
from statefleet.actors.pools import PoolActor
from statefleet.actors.process import ActorProcess
from statefleet.actors.shards import ShardActor
from statefleet.engine.handlers import HandlerFactory
from statefleet.engine.runtime.settings import EngineSettings

__all__ = [
    "NAMESPACE",
    "POOL_RESOURCE",
    "RESOURCE_MODES",
    "SHARD_RESOURCE",
    "ResourceMode",
    "actor_names",
    "make_pools",
    "make_shards",
]

NAMESPACE = "statefleet"
SHARD_RESOURCE = "statefleet_shard"
POOL_RESOURCE = "statefleet_pool"
#: ``require``: reserve the custom resources, and refuse to start on a cluster that
#: declares none (nothing would ever run); ``wait``: reserve them and let an autoscaler
#: add nodes that declare them; ``off``: reserve nothing (any node hosts actors).
ResourceMode = Literal["require", "wait", "off"]
RESOURCE_MODES: tuple[ResourceMode, ...] = ("require", "wait", "off")

_OPTIONS: dict[str, Any] = {
    "max_restarts": -1,
    "max_task_retries": -1,
    "num_cpus": 0,
    "lifetime": "detached",
    "namespace": NAMESPACE,
    "get_if_exists": True,
}

_Shard = ray.remote(ShardActor)
_Pool = ray.remote(PoolActor)


def _deployment(dsn: str) -> str:
    digest = hashlib.blake2b(dsn.encode(), digest_size=6).hexdigest()
    return f"v{__version__}-{digest}"


def actor_names(dsn: str, settings: EngineSettings) -> tuple[list[str], list[str]]:
    """The names of the shard and pool actors of the deployment on ``dsn``."""
    base = _deployment(dsn)
    shards = [f"shard-{base}-{i}-of-{settings.shards}" for i in range(settings.shards)]
    pools = [f"pool-{base}-{i}" for i in range(settings.pools)]
    return shards, pools


def _resources(mode: ResourceMode, name: str) -> dict[str, Any]:
    return {} if mode == "off" else {"resources": {name: 1}}


def make_shards(
    dsn: str,
    settings: EngineSettings,
    resources: ResourceMode,
    process: ActorProcess,
) -> list[Any]:
    """The shard actors (created, or found running); handles in index order."""
    names, _ = actor_names(dsn, settings)
    options = _OPTIONS | _resources(resources, SHARD_RESOURCE)
    return [
        _Shard.options(name=name, **options).remote(
            i, dsn, settings.shard(), settings.db_pool_size, process=process
        )
        for i, name in enumerate(names)
    ]


def make_pools(
    dsn: str,
    handlers: HandlerFactory,
    settings: EngineSettings,
    resources: ResourceMode,
    process: ActorProcess,
) -> list[Any]:
    """The executor pool actors (created, or found running); handles in index order."""
    _, names = actor_names(dsn, settings)
    options = _OPTIONS | _resources(resources, POOL_RESOURCE)
    return [
        _Pool.options(name=name, **options).remote(
            i,
            dsn,
            handlers,
            settings.executor(),
            settings.db_pool_size,
            process=process,
        )
        for i, name in enumerate(names)
    ]
