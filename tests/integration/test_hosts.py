"""A host's first calls arrive together (a Ray async actor runs them concurrently): they
must share one database pool and one shard or executor, so that users' handler classes
are built once per pool and closed once."""

from __future__ import annotations

import asyncio
from typing import Any

from statefleet.engine.handlers import HandlerRegistry, TaskContext
from statefleet.engine.runtime.executor import ExecutorSettings
from statefleet.engine.runtime.hosts import PoolHost, ShardHost
from statefleet.engine.runtime.shard import ShardSettings


class Counted:
    """A handler class that counts how often it is built and closed."""

    built = 0
    closed = 0

    def __init__(self, env: dict[str, str]) -> None:
        type(self).built += 1

    async def __call__(self, task: TaskContext) -> Any:
        return {}

    async def aclose(self) -> None:
        type(self).closed += 1


def counted_registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("COUNTED", Counted({}))
    return registry


async def test_concurrent_first_calls_build_one_executor_and_one_registry(
    database_dsn: str,
) -> None:
    Counted.built = Counted.closed = 0
    host = PoolHost(0, database_dsn, counted_registry, ExecutorSettings())
    try:
        await asyncio.gather(*(host.run_tasks([]) for _ in range(8)))
        assert Counted.built == 1
    finally:
        await host.close()
    assert Counted.closed == 1


async def test_concurrent_first_calls_build_one_shard(database_dsn: str) -> None:
    host = ShardHost(0, database_dsn, ShardSettings())
    try:
        shards = await asyncio.gather(*(host._ready() for _ in range(8)))
        assert len({id(shard) for shard in shards}) == 1
    finally:
        await host.close()
