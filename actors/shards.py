"""The shard actor: a thin Ray host for :class:`~statefleet.engine.runtime.shard.InstanceShard`.

Made a Ray actor by :mod:`statefleet.actors.factory` only. It opens its own asyncpg
pool on its first call (inside the actor's event loop) and never touches a queue:
``apply_batch`` returns the committed outbox rows for the dispatcher to publish.
"""

from __future__ import annotations

import os
from typing import Any

import asyncpg

from statefleet.engine.ports.queue import (
    EVENT_JOB,
    ORCHESTRATOR_QUEUE,
    EventJobData,
    MalformedJobError,
    QueueJob,
    parse_event_job,
)
from statefleet.engine.runtime.instances import InstanceRuntime
from statefleet.engine.runtime.outbox import CollectingPublisher
from statefleet.engine.runtime.shard import InstanceShard, ShardSettings
from statefleet.engine.store.db import create_pool

__all__ = ["ShardHost"]


class ShardHost:
    """One instance shard and its database pool; methods are the actor's remote API."""

    def __init__(self, index: int, dsn: str, settings: ShardSettings, db_pool_size: int) -> None:
        self.index = index
        self.dsn = dsn
        self.settings = settings
        self.db_pool_size = db_pool_size
        self._pool: asyncpg.Pool[Any] | None = None
        self._shard: InstanceShard | None = None

    async def _ready(self) -> InstanceShard:
        if self._shard is None:
            self._pool = await create_pool(self.dsn, max_size=self.db_pool_size)
            pool = self._pool
            self._shard = InstanceShard(
                lambda shard: InstanceRuntime(pool, CollectingPublisher(), checkpoints=shard),
                self.settings,
            )
        return self._shard

    async def apply_batch(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Applies event job data (``QueueJob.data`` of ``event`` jobs) and commits it.

        Returns ``{"outcomes": [...], "outbox": [OutboxRow, ...]}``: one outcome
        name per event, and the rows committed, for the caller to publish.
        Raises on infrastructure errors (the caller redelivers the events).
        """
        shard = await self._ready()
        parsed: list[EventJobData] = []
        malformed: dict[int, str] = {}
        for index, data in enumerate(events):
            try:
                parsed.append(parse_event_job(QueueJob(ORCHESTRATOR_QUEUE, EVENT_JOB, data)))
            except MalformedJobError as error:
                malformed[index] = str(error)
        result = await shard.submit(parsed)
        outcomes = iter(result.outcomes)
        names = [
            "malformed" if i in malformed else next(outcomes).outcome for i in range(len(events))
        ]
        return {"outcomes": names, "outbox": result.outbox}

    async def stats(self) -> dict[str, int]:
        shard = await self._ready()
        return {
            "index": self.index,
            "pid": os.getpid(),
            "resident": shard.resident_count(),
            "peak_resident": shard.peak_resident,
            "actors": shard.actor_count(),
            "commits": shard.commits,
        }

    async def close(self) -> None:
        if self._shard is not None:
            await self._shard.close()
        if self._pool is not None:
            await self._pool.close()
        self._shard = self._pool = None
