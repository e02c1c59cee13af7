"""The engine loop's own duties: liveness that notices a backend gone for good."""

from __future__ import annotations

import contextlib
import time
import uuid

from runtime_support import FAST, handlers_of

from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.handlers import HandlerRegistry
from statefleet.engine.ports import PartialBatchFailure, event_job
from statefleet.engine.runtime import Engine, LocalBackend
from statefleet.engine.store.db import create_pool


async def test_liveness_fails_once_the_backend_has_only_failed_for_a_while(
    database_dsn: str,
) -> None:
    front = await create_pool(database_dsn, max_size=2)
    hosts_pool = await create_pool(database_dsn, max_size=2)
    queue = MemoryQueue()
    backend = LocalBackend(hosts_pool, handlers_of(HandlerRegistry()), FAST)
    engine = Engine(front, queue, backend, FAST)
    await engine.start()
    job = event_job(tenant_id="acme", instance_id=str(uuid.uuid4()), event_id="e", event_type="GO")
    try:
        await engine.on_events([job])  # reaches the shard: unknown instance, fine
        later = time.monotonic() + 60
        assert engine.alive()
        assert not engine.backend_lost(now=later)  # quiet is not lost
        # The shards' database goes away (as a lost Ray Client session would).
        await hosts_pool.close()
        returned = False
        with contextlib.suppress(PartialBatchFailure):
            await engine.on_events([job])
            returned = True
        assert not returned, "the batch must fail (and be redelivered by the queue)"
        assert engine.alive()  # a failure is not death
        assert engine.backend_lost(now=later)  # only failures for a minute is
    finally:
        await engine.stop()
        await queue.close()
        await front.close()
