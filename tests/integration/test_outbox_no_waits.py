"""The outbox never makes a publisher wait on a row lock: marks skip locked rows, and
the sweeper holds no lock while it talks to the broker (issue 14's 94 s stall)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import asyncpg
import pytest

from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.ports.queue import ORCHESTRATOR_QUEUE, QueueJob
from statefleet.engine.runtime.outbox import OutboxRow, Publisher, insert_outbox
from statefleet.engine.store.db import create_pool

pytestmark = pytest.mark.asyncio


class SlowBroker(MemoryQueue):
    """A broker whose ``enqueue_many`` hangs until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def enqueue_many(self, jobs: Iterable[QueueJob]) -> None:
        self.entered.set()
        await self.release.wait()
        await super().enqueue_many(jobs)


@pytest.fixture
async def pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    created = await create_pool(database_dsn, max_size=4)
    try:
        yield created
    finally:
        await created.close()


async def stored_row(pool: asyncpg.Pool[Any]) -> OutboxRow:
    row = OutboxRow(
        tenant_id="acme",
        id=uuid.uuid4(),
        instance_id=None,
        queue=ORCHESTRATOR_QUEUE,
        job_name="event",
        data={"tenantId": "acme"},
        dedupe_key=f"k-{uuid.uuid4()}",
    )
    async with pool.acquire() as connection:
        assert await insert_outbox(connection, [row]) == [row]
    return row


async def published(pool: asyncpg.Pool[Any], row: OutboxRow) -> bool:
    async with pool.acquire() as connection:
        value = await connection.fetchval(
            "SELECT published_at IS NOT NULL FROM outbox WHERE id = $1", row.id
        )
    return bool(value)


async def test_a_mark_skips_a_row_held_elsewhere_instead_of_waiting(
    pool: asyncpg.Pool[Any],
) -> None:
    row = await stored_row(pool)
    queue = MemoryQueue()
    publisher = Publisher(pool, queue)
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE", row.id)
        # Before: this waited for as long as the lock was held.
        await asyncio.wait_for(publisher.mark_published([row]), timeout=5)
        assert not await published(pool, row)
    await publisher.mark_published([row])
    assert await published(pool, row)
    await queue.close()


async def test_the_sweeper_holds_no_lock_while_the_broker_is_slow(
    pool: asyncpg.Pool[Any],
) -> None:
    row = await stored_row(pool)
    broker = SlowBroker()
    sweeper = Publisher(pool, broker)
    sweep = asyncio.create_task(sweeper.republish_stale(grace_ms=0))
    await asyncio.wait_for(broker.entered.wait(), timeout=10)
    async with pool.acquire() as connection, connection.transaction():
        # NOWAIT fails at once if the sweeper held the row.
        await connection.execute("SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE NOWAIT", row.id)
    # A publisher marks it meanwhile, without waiting for the broker.
    await asyncio.wait_for(Publisher(pool, MemoryQueue()).mark_published([row]), timeout=5)
    broker.release.set()
    assert await sweep == 1
    assert await published(pool, row)
    await broker.close()
