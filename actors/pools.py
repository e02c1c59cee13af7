"""The executor pool actor: a thin Ray host for a ``TaskExecutor`` (engine/runtime/executor.py).

Made a Ray actor by :mod:`statefleet.actors.factory` only. It builds its handler
registry from a factory on its first call (registries hold clients and are not
pickled) and returns committed outbox rows instead of publishing them.
"""

from __future__ import annotations

import os
from typing import Any

import asyncpg

from statefleet.actors.config import RegistryFactory, load_registry_factory
from statefleet.engine.ports.queue import TaskJobData
from statefleet.engine.runtime.executor import ExecutorSettings, TaskExecutor
from statefleet.engine.store.db import create_pool

__all__ = ["PoolHost"]


class PoolHost:
    """One task executor, its registry and its database pool."""

    def __init__(
        self,
        index: int,
        dsn: str,
        registry_factory: RegistryFactory,
        settings: ExecutorSettings,
        db_pool_size: int,
    ) -> None:
        self.index = index
        self.dsn = dsn
        self.registry_factory = registry_factory
        self.settings = settings
        self.db_pool_size = db_pool_size
        self._pool: asyncpg.Pool[Any] | None = None
        self._executor: TaskExecutor | None = None

    async def _ready(self) -> TaskExecutor:
        if self._executor is None:
            registry = load_registry_factory(self.registry_factory)()
            self._pool = await create_pool(self.dsn, max_size=self.db_pool_size)
            self._executor = TaskExecutor(
                self._pool, registry, self.settings, worker_id=f"pool-{self.index}-{os.getpid()}"
            )
        return self._executor

    async def run_batch(self, jobs: list[dict[str, str]]) -> dict[str, Any]:
        """Runs task jobs (``{"tenantId", "taskId"}``); returns results, rows, failed indexes."""
        executor = await self._ready()
        data = [TaskJobData(tenant_id=j["tenantId"], task_id=j["taskId"]) for j in jobs]
        result = await executor.run_batch(data)
        return {"results": result.results, "outbox": result.outbox, "failed": result.failed}

    async def pid(self) -> int:
        return os.getpid()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        self._pool = None
        self._executor = None
