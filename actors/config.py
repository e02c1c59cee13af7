"""The actor layer's knobs, in one object; ``from_env`` reads the ``STATEFLEET_*`` variables.

The variables are documented in ``docs/configuration.md`` ("Actor layer").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module

from statefleet.engine.handlers import HandlerRegistry, noop_handler

__all__ = ["ActorSettings", "RegistryFactory", "load_registry_factory", "noop_registry"]

#: Builds the handler registry inside each executor pool actor: a picklable callable
#: (a module-level function, a ``functools.partial`` of one) or its import path
#: ``"package.module:function"``. Registries hold clients, so they are built where
#: they run, never pickled.
RegistryFactory = Callable[[], HandlerRegistry] | str


@dataclass(frozen=True, slots=True)
class ActorSettings:
    #: Instance shard actors; an instance belongs to shard ``hash(id) % shards``.
    shards: int = os.cpu_count() or 1
    #: Executor pool actors.
    pools: int = 1
    #: Checkpoints one shard keeps in memory at most.
    max_resident: int = 10_000
    #: A virtual actor idle this long is passivated.
    idle_ms: int = 60_000
    #: Orchestrator jobs per dispatcher batch (split across the shards).
    event_batch_size: int = 1_000
    event_batch_wait_ms: int = 5
    #: Dispatcher batches in flight at once.
    event_concurrency: int = 4
    #: Events one shard commits per transaction at most.
    shard_commit_batch: int = 512
    #: Commits in flight per shard (on disjoint instances).
    shard_commit_concurrency: int = 2
    #: Task jobs per batch sent to one pool.
    task_batch_size: int = 200
    task_batch_wait_ms: int = 5
    #: Task batches in flight at once (across pools).
    task_concurrency: int = 8
    #: Attempts of one task type running at once, per pool.
    task_type_limit: int = 64
    #: Lease of a task without its own ``timeout`` (a dead pool's task waits this long).
    task_default_lease_ms: int = 300_000
    task_lease_margin_ms: int = 5_000
    #: asyncpg connections per shard and per pool actor.
    db_pool_size: int = 4
    sweep_interval_ms: int = 5_000
    sweep_grace_ms: int = 10_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ActorSettings:
        """Settings from ``STATEFLEET_*`` variables; unset ones keep their defaults.

        Raises:
            ValueError: a variable is not a positive integer.
        """
        env = os.environ if environ is None else environ
        names = {
            "STATEFLEET_SHARDS": "shards",
            "STATEFLEET_POOLS": "pools",
            "STATEFLEET_MAX_RESIDENT": "max_resident",
            "STATEFLEET_IDLE_MS": "idle_ms",
            "STATEFLEET_EVENT_BATCH": "event_batch_size",
            "STATEFLEET_TASK_BATCH": "task_batch_size",
            "STATEFLEET_TASK_TYPE_LIMIT": "task_type_limit",
            "STATEFLEET_SWEEP_INTERVAL_MS": "sweep_interval_ms",
        }
        values: dict[str, int] = {}
        for variable, attribute in names.items():
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{variable} must be an integer, got {raw!r}") from None
            if value < 1:
                raise ValueError(f"{variable} must be at least 1, got {value}")
            values[attribute] = value
        return cls(**values)


def load_registry_factory(factory: RegistryFactory) -> Callable[[], HandlerRegistry]:
    """The callable behind ``factory`` (importing ``"module:function"`` paths)."""
    if not isinstance(factory, str):
        return factory
    module_name, _, attribute = factory.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"a registry factory path is 'module:function', got {factory!r}")
    built: Callable[[], HandlerRegistry] = getattr(import_module(module_name), attribute)
    return built


def noop_registry(*task_types: str) -> HandlerRegistry:
    """A registry where every given task type succeeds at once (tests, benchmarks)."""
    registry = HandlerRegistry()
    for task_type in task_types:
        registry.register(task_type, noop_handler)
    return registry


def hello_noop() -> HandlerRegistry:
    """The hello workflow's registry with its e-mail step a no-op (demo, benchmarks)."""
    return noop_registry("EMAIL")
