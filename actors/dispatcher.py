"""The sharded dispatcher: queue jobs in, one Ray call per shard (or pool) per batch out.

Runs in the process that owns the queue client (the driver). It consumes
``workflow-orchestrator`` in batches and routes each event to the shard owning its
instance, ``stable_hash(instance id) % shards``, sending each shard its share of the
batch in one call, all shards at once. It consumes ``workflow-task-runner`` likewise
and hands task batches to the executor pools round-robin. Shards and pools return
the outbox rows their commits wrote; the dispatcher publishes them (enqueue, then
mark published) and only then acknowledges the batch. It also runs the sweeper,
which republishes rows lost in between (a dead actor, a dead dispatcher).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from statefleet.actors.config import ActorSettings
from statefleet.engine.ports.queue import (
    ORCHESTRATOR_QUEUE,
    TASK_RUNNER_QUEUE,
    Consumer,
    MalformedJobError,
    PartialBatchFailure,
    Queue,
    QueueJob,
    parse_event_job,
    parse_task_job,
)
from statefleet.engine.runtime.outbox import OutboxRow, Publisher
from statefleet.engine.runtime.sweeper import Sweeper
from statefleet.engine.store.queries import load_queries

__all__ = ["Dispatcher", "stable_hash"]

log = logging.getLogger(__name__)
OUTBOX_SQL = load_queries("outbox.sql")


def stable_hash(key: str) -> int:
    """A hash that is the same in every process and run (Python's ``hash`` is salted)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class Dispatcher:
    """Routes queue jobs to shard and pool actors; publishes what they return."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        queue: Queue,
        shards: Sequence[Any],
        pools: Sequence[Any],
        settings: ActorSettings,
    ) -> None:
        self.pool = pool
        self.queue = queue
        self.shards = list(shards)
        self.pools = list(pools)
        self.settings = settings
        self.publisher = Publisher(pool, queue)
        self.sweeper = Sweeper(
            pool,
            self.publisher,
            interval_ms=settings.sweep_interval_ms,
            grace_ms=settings.sweep_grace_ms,
        )
        self._next_pool = itertools.cycle(range(len(self.pools)))
        self._consumers: list[Consumer] = []

    def shard_of(self, instance_id: str) -> int:
        return stable_hash(instance_id) % len(self.shards)

    async def start(self) -> None:
        s = self.settings
        self._consumers = [
            await self.queue.consume_batches(
                ORCHESTRATOR_QUEUE,
                self.on_events,
                max_batch_size=s.event_batch_size,
                max_wait_ms=s.event_batch_wait_ms,
                concurrency=s.event_concurrency,
            )
        ]
        if self.pools:
            self._consumers.append(
                await self.queue.consume_batches(
                    TASK_RUNNER_QUEUE,
                    self.on_tasks,
                    max_batch_size=s.task_batch_size,
                    max_wait_ms=s.task_batch_wait_ms,
                    concurrency=s.task_concurrency,
                )
            )
        self.sweeper.start()

    async def stop(self) -> None:
        await self.sweeper.stop()
        for consumer in self._consumers:
            await consumer.stop()
        self._consumers = []

    async def on_events(self, jobs: list[QueueJob]) -> None:
        """One call per shard with that shard's events; fails only the jobs of a failed call."""
        routed: dict[int, list[QueueJob]] = {}
        for job in jobs:
            try:
                event = parse_event_job(job)
            except MalformedJobError as error:
                await self.dead_letter(job, str(error))
                continue
            routed.setdefault(self.shard_of(event.instance_id), []).append(job)
        order = list(routed)
        replies = await asyncio.gather(
            *(self.shards[i].apply_batch.remote([j.data for j in routed[i]]) for i in order),
            return_exceptions=True,
        )
        await self._settle(order, routed, replies, "shard")

    async def on_tasks(self, jobs: list[QueueJob]) -> None:
        """The batch goes to the next pool; jobs of a failed call or job are redelivered."""
        valid: list[QueueJob] = []
        for job in jobs:
            try:
                parse_task_job(job)
            except MalformedJobError as error:
                await self.dead_letter(job, str(error))
                continue
            valid.append(job)
        if not valid:
            return
        index = next(self._next_pool)
        try:
            reply = await self.pools[index].run_batch.remote([j.data for j in valid])
        except Exception as error:
            log.warning("pool %d failed a batch of %d task(s): %r", index, len(valid), error)
            raise PartialBatchFailure(valid, f"pool {index} failed") from error
        await self._publish(reply["outbox"])
        if reply["failed"]:
            raise PartialBatchFailure([valid[i] for i in reply["failed"]])

    async def _settle(
        self,
        order: list[int],
        routed: dict[int, list[QueueJob]],
        replies: list[Any],
        kind: str,
    ) -> None:
        failed: list[QueueJob] = []
        rows: list[OutboxRow] = []
        for index, reply in zip(order, replies, strict=True):
            if isinstance(reply, BaseException):
                log.warning(
                    "%s %d failed a batch of %d: %r", kind, index, len(routed[index]), reply
                )
                failed.extend(routed[index])
                continue
            rows.extend(reply["outbox"])
            for outcome, job in zip(reply["outcomes"], routed[index], strict=True):
                if outcome == "unknown_instance":
                    log.warning("event for unknown instance: %s", job.data.get("instanceId"))
        await self._publish(rows)
        if failed:
            raise PartialBatchFailure(failed)

    async def _publish(self, rows: Sequence[OutboxRow]) -> None:
        """Best effort: the rows are committed; the sweeper publishes what this misses."""
        try:
            await self.publisher.publish(rows)
        except Exception:
            log.exception("publishing %d outbox job(s) failed; the sweeper will retry", len(rows))

    async def dead_letter(self, job: QueueJob, reason: str) -> None:
        """Keeps a job that can never succeed where people can see it, then lets it go."""
        body = orjson.dumps({"name": job.name, "data": job.data})
        async with self.pool.acquire() as connection:
            await connection.execute(
                OUTBOX_SQL["insert_dead_letter"], None, job.queue, body, reason
            )
