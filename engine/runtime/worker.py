"""A worker: the two queue consumers and the sweeper, wired to one database.

This is the single-process shape of the engine (tests, ``statefleet up`` with
the memory driver); the actor layer hosts the same pieces in Ray actors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from statefleet.engine.handlers import HandlerRegistry
from statefleet.engine.ports.queue import (
    ORCHESTRATOR_QUEUE,
    TASK_RUNNER_QUEUE,
    Consumer,
    EventJobData,
    MalformedJobError,
    Queue,
    QueueJob,
    parse_event_job,
    parse_task_job,
)
from statefleet.engine.runtime.checkpoints import RecentCheckpoints
from statefleet.engine.runtime.instances import InstanceRuntime
from statefleet.engine.runtime.machines import MachineCache
from statefleet.engine.runtime.observe import Observer
from statefleet.engine.runtime.outbox import Publisher
from statefleet.engine.runtime.sweeper import Sweeper
from statefleet.engine.runtime.tasks import TaskRunner, TaskRunnerSettings
from statefleet.engine.store.queries import load_queries

__all__ = ["Worker", "WorkerSettings"]

log = logging.getLogger(__name__)
OUTBOX_SQL = load_queries("outbox.sql")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    event_batch_size: int = 256
    event_batch_wait_ms: int = 5
    event_concurrency: int = 2
    task_concurrency: int = 128
    sweep_interval_ms: int = 5_000
    sweep_grace_ms: int = 10_000
    sweep_event_grace_ms: int = 60_000
    #: Checkpoints of recently stepped instances kept in memory (0: read every step).
    checkpoint_cache: int = 10_000
    tasks: TaskRunnerSettings = field(default_factory=TaskRunnerSettings)


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        queue: Queue,
        registry: HandlerRegistry,
        *,
        settings: WorkerSettings | None = None,
        worker_id: str | None = None,
        machines: MachineCache | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.pool = pool
        self.queue = queue
        self.settings = settings or WorkerSettings()
        self.publisher = Publisher(pool, queue)
        cache = (
            RecentCheckpoints(self.settings.checkpoint_cache)
            if self.settings.checkpoint_cache > 0
            else None
        )
        self.instances = InstanceRuntime(
            pool, self.publisher, machines, observer=observer, checkpoints=cache
        )
        self.tasks = TaskRunner(
            pool,
            registry,
            self.publisher,
            worker_id=worker_id,
            settings=self.settings.tasks,
            observer=observer,
        )
        self.sweeper = Sweeper(
            pool,
            self.publisher,
            interval_ms=self.settings.sweep_interval_ms,
            grace_ms=self.settings.sweep_grace_ms,
            event_grace_ms=self.settings.sweep_event_grace_ms,
        )
        self._consumers: list[Consumer] = []

    async def start(self) -> None:
        s = self.settings
        self._consumers = [
            await self.queue.consume_batches(
                ORCHESTRATOR_QUEUE,
                self.on_events,
                max_batch_size=s.event_batch_size,
                max_wait_ms=s.event_batch_wait_ms,
                concurrency=s.event_concurrency,
            ),
            await self.queue.consume(
                TASK_RUNNER_QUEUE, self.on_task, concurrency=s.task_concurrency
            ),
        ]
        self.sweeper.start()

    async def stop(self) -> None:
        await self.sweeper.stop()
        for consumer in self._consumers:
            await consumer.stop()
        self._consumers = []

    async def on_events(self, jobs: list[QueueJob]) -> None:
        events: list[EventJobData] = []
        for job in jobs:
            try:
                events.append(parse_event_job(job))
            except MalformedJobError as exc:
                await self.dead_letter(None, job, str(exc))
        if not events:
            return
        for outcome in await self.instances.apply(events):
            if outcome.outcome == "unknown_instance":
                log.warning(
                    "event %s for unknown instance %s", outcome.event_id, outcome.instance_id
                )

    async def on_task(self, job: QueueJob) -> None:
        try:
            data = parse_task_job(job)
        except MalformedJobError as exc:
            await self.dead_letter(None, job, str(exc))
            return
        await self.tasks.run(data.tenant_id, data.task_id)

    async def dead_letter(self, tenant_id: str | None, job: QueueJob, reason: str) -> None:
        """Keeps a job that can never succeed where people can see it, then lets it go."""
        body = orjson.dumps({"name": job.name, "data": job.data})
        async with self.pool.acquire() as connection:
            await connection.execute(
                OUTBOX_SQL["insert_dead_letter"], tenant_id, job.queue, body, reason
            )
