"""A shard and a task executor as self-contained units: what a backend hosts.

:class:`ShardHost` wraps one :class:`InstanceShard` and :class:`PoolHost` one
:class:`TaskExecutor`, each with the database pool it commits through. They are plain
asyncio classes: the in-process backend (``local.py``) holds them in a list, and the
Ray backend (``actors/``) makes each one a Ray actor with a thin subclass. So
everything a shard or pool needs travels in its constructor arguments (a DSN, the
settings, a picklable handler factory), never through the environment of whatever
process ends up running it.

A host built with a DSN opens its own pool on first use (inside the event loop that
will use it: a Ray actor's); one built with a pool shares it and never closes it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from statefleet.engine import tracing
from statefleet.engine.handlers.registry import HandlerFactory, load_handler_factory
from statefleet.engine.ports.backend import PoolReply, ShardReply, TaskClaim
from statefleet.engine.ports.queue import EventJobData, TaskJobData
from statefleet.engine.runtime.executor import ExecutorSettings, TaskExecutor
from statefleet.engine.runtime.instances import InstanceRuntime
from statefleet.engine.runtime.machines import MachineCache
from statefleet.engine.runtime.outbox import CollectingPublisher, continue_traces
from statefleet.engine.runtime.shard import InstanceShard, ShardSettings
from statefleet.engine.runtime.tally import Tally
from statefleet.engine.store.db import Pool, create_pool

__all__ = ["PoolHost", "ShardHost"]


class _Database:
    """A DSN to open a pool from lazily, or a pool to share."""

    def __init__(self, database: str | Pool, size: int) -> None:
        self._dsn = database if isinstance(database, str) else None
        self._pool = None if isinstance(database, str) else database
        self._size = size
        # A host's first calls arrive together (an async actor runs them concurrently):
        # they must share one pool, not each open their own.
        self._opening = asyncio.Lock()

    async def pool(self) -> Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    assert self._dsn is not None
                    self._pool = await create_pool(self._dsn, max_size=self._size)
        return self._pool

    async def close(self) -> None:
        if self._dsn is not None and self._pool is not None:
            await self._pool.close()
            self._pool = None


def _step_spans(events: Sequence[EventJobData]) -> dict[str, tracing.Span]:
    """A ``statefleet.step`` span per traced event, by instance (the last one wins)."""
    spans: dict[str, tracing.Span] = {}
    for event in events:
        if event.trace:
            spans[event.instance_id] = tracing.start_span(
                f"statefleet.step {event.event_type}",
                event.trace,
                {
                    "statefleet.tenant_id": event.tenant_id,
                    "statefleet.instance_id": event.instance_id,
                    "statefleet.event_id": event.event_id,
                },
            )
    return spans


class ShardHost:
    """One instance shard and its database; see the module docstring."""

    def __init__(
        self,
        index: int,
        database: str | Pool,
        settings: ShardSettings,
        db_pool_size: int = 4,
        *,
        machines: MachineCache | None = None,
    ) -> None:
        self.index = index
        self.settings = settings
        self._database = _Database(database, db_pool_size)
        self._machines = machines
        #: What this shard did since its last reply; the reply carries it home.
        self.tally = Tally()
        self._shard: InstanceShard | None = None

    async def _ready(self) -> InstanceShard:
        if self._shard is None:
            pool = await self._database.pool()
            # Checked again after the await: concurrent first calls build one shard.
            if self._shard is None:
                machines, observer = self._machines, self.tally
                self._shard = InstanceShard(
                    lambda shard: InstanceRuntime(
                        pool,
                        CollectingPublisher(),
                        machines,
                        checkpoints=shard,
                        observer=observer,
                        step_limits=self.settings.step,
                    ),
                    self.settings,
                )
        return self._shard

    async def warm(self) -> None:
        """Opens the database pool and builds the shard now, not on the first batch."""
        await self._ready()

    async def apply(
        self, events: Sequence[EventJobData], claim: TaskClaim | None = None
    ) -> ShardReply:
        """Applies and commits ``events``; returns their outcomes and the rows to publish
        (``claim``: see ``Backend.apply``)."""
        shard = await self._ready()
        spans = _step_spans(events)
        try:
            result = await shard.submit(events, claim)
        finally:
            for span in spans.values():
                span.end()
        if spans:
            continue_traces(spans, result.outbox)
        outcomes: list[str] = [o.outcome for o in result.outcomes]
        return ShardReply(outcomes, result.outbox, self.tally.take())

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
        self._shard = None
        await self._database.close()


class PoolHost:
    """One task executor, its handler registry and its database."""

    def __init__(
        self,
        index: int,
        database: str | Pool,
        handlers: HandlerFactory,
        settings: ExecutorSettings,
        db_pool_size: int = 4,
        *,
        identity: str | None = None,
    ) -> None:
        self.index = index
        self.settings = settings
        self._database = _Database(database, db_pool_size)
        self._handlers = handlers
        #: What this pool did since its last reply; the reply carries it home.
        self.tally = Tally()
        #: Stable across restarts of this pool (see TaskExecutor.identity), if any.
        self.identity = identity
        self._executor: TaskExecutor | None = None

    async def _ready(self) -> TaskExecutor:
        if self._executor is None:
            pool = await self._database.pool()
            # Checked again after the await, and no await from here to the assignment:
            # concurrent first calls build one registry (users' handler classes once).
            if self._executor is None:
                # Built here, not pickled: registries hold clients (SMTP, HTTP, AI).
                registry = load_handler_factory(self._handlers)()
                self._executor = TaskExecutor(
                    pool,
                    registry,
                    self.settings,
                    worker_id=None if self.identity else f"pool-{self.index}-{os.getpid()}",
                    observer=self.tally,
                    identity=self.identity,
                )
        return self._executor

    async def warm(self) -> str:
        """Opens the database pool and builds the handlers now, not on the first batch;
        returns this pool's lease owner (the admitter claims tasks for it under it)."""
        return (await self._ready()).worker_id

    async def run_tasks(self, jobs: Sequence[TaskJobData]) -> PoolReply:
        """Runs one attempt of each job's task; see ``TaskExecutor.run_batch``."""
        executor = await self._ready()
        result = await executor.run_batch(jobs)
        return PoolReply(
            result.results, result.outbox, result.failed, self.tally.take(), executor.worker_id
        )

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await executor.registry.aclose()
        await self._database.close()
