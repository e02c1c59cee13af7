"""Node's ``bullmq`` (npm) and our BullMQ driver share queues, as the contract promises.

A Node producer adds ``event`` jobs that our workers apply, and a Node worker takes
the ``task`` jobs our engine adds. Both run against the session's real Redis.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from node_interop import ensure_node_modules, run_script
from redis_server import redis_url_for_tests
from runtime_support import engine_on, wait_for

from statefleet.drivers.bullmq import BullMQQueue
from statefleet.engine.handlers import HandlerRegistry
from statefleet.engine.ports import ORCHESTRATOR_QUEUE, task_dedupe_key
from statefleet.engine.runtime import Engine, WorkflowService
from statefleet.engine.store.db import create_pool

pytestmark = pytest.mark.asyncio

HERE = pathlib.Path(__file__).parent
HELLO = json.loads((HERE.parent / "fixtures" / "hello-workflow.json").read_text())
TENANT = "acme"
COUNTER: dict[str, Any] = {
    "id": "counter",
    "initial": "counting",
    "context": {"n": 0, "last": None},
    "states": {
        "counting": {
            "on": {
                "INC": {
                    "actions": [
                        {"type": "assign", "path": "n", "value": {"$expr": "context.n + 1"}},
                        {"type": "assign", "path": "last", "value": {"$expr": "event.payload"}},
                    ]
                }
            }
        }
    },
}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``REDIS_URL``, or a throwaway ``redis-server`` for the session."""
    with redis_url_for_tests() as url:
        yield url


@pytest.fixture
def node() -> str:
    return ensure_node_modules()


@asynccontextmanager
async def bullmq_engine(
    dsn: str, redis_url: str, prefix: str, *, tasks: bool = True
) -> AsyncIterator[tuple[WorkflowService, Engine]]:
    """An engine on the BullMQ driver; ``tasks=False`` leaves the task queue to Node."""
    pool = await create_pool(dsn, max_size=8)
    queue = BullMQQueue(redis_url, prefix=prefix, min_backoff_ms=50)
    consumer = None
    try:
        async with engine_on(pool, queue, HandlerRegistry(), start=tasks) as engine:
            if not tasks:
                consumer = await queue.consume_batches(
                    ORCHESTRATOR_QUEUE, engine.on_events, max_batch_size=64, max_wait_ms=2
                )
            try:
                yield WorkflowService(pool, engine.runtime), engine
            finally:
                if consumer is not None:
                    await consumer.stop()
    finally:
        await queue.close()
        await pool.close()


async def test_events_added_by_node_bullmq_are_applied_once_each(
    node: str, redis_url: str, database_dsn: str
) -> None:
    prefix = f"sf-interop-{uuid.uuid4().hex[:8]}"
    async with bullmq_engine(database_dsn, redis_url, prefix) as (service, _):
        await service.deploy(TENANT, COUNTER)
        started = await service.start(TENANT, "counter", {}, start_event=None)
        instance = str(started.instance_id)

        def event(event_id: str, payload: Any) -> dict[str, Any]:
            data = {"tenantId": TENANT, "instanceId": instance}
            data["event"] = {"id": event_id, "type": "INC"}
            if payload is not None:
                data["event"]["payload"] = payload
            return {"data": data, "jobId": event_id}

        answer = await run_script(
            node,
            "add_events.mjs",
            {
                "redisUrl": redis_url,
                "prefix": prefix,
                "jobs": [event("evt-a", {"by": "ana"}), event("evt-b", None)],
            },
        )
        assert answer["ids"] == ["evt-a", "evt-b"]
        await wait_for(service, TENANT, started.instance_id, lambda v: v.context["n"] >= 2)
        # The same event id again, after the first was applied: applied once in all.
        await run_script(
            node,
            "add_events.mjs",
            {"redisUrl": redis_url, "prefix": prefix, "jobs": [event("evt-a", {"by": "x"})]},
        )
        await run_script(
            node,
            "add_events.mjs",
            {"redisUrl": redis_url, "prefix": prefix, "jobs": [event("evt-c", {"by": "bo"})]},
        )
        view = await wait_for(service, TENANT, started.instance_id, lambda v: v.context["n"] >= 3)
        history = await service.history(TENANT, started.instance_id)

    assert view.context == {"n": 3, "last": {"by": "bo"}}
    assert [h["type"] for h in history] == ["xstate.init", "INC", "INC", "INC"]
    # evt-a and evt-b were queued together and may be taken by concurrent batches, in
    # either order; evt-c was added after both were applied.
    payloads = [h["payload"] for h in history[1:]]
    assert sorted(payloads[:2], key=len) == [{}, {"by": "ana"}]
    assert payloads[2] == {"by": "bo"}


async def test_a_node_bullmq_worker_takes_the_task_jobs_the_engine_adds(
    node: str, redis_url: str, database_dsn: str
) -> None:
    prefix = f"sf-interop-{uuid.uuid4().hex[:8]}"
    consumer = asyncio.create_task(
        run_script(node, "consume_tasks.mjs", {"redisUrl": redis_url, "prefix": prefix, "count": 2})
    )
    try:
        async with bullmq_engine(database_dsn, redis_url, prefix, tasks=False) as (service, _):
            await service.deploy(TENANT, HELLO)
            first = await service.start(TENANT, "hello-workflow", {})
            second = await service.start(TENANT, "hello-workflow", {})
            async with asyncio.timeout(60):
                seen = (await asyncio.shield(consumer))["jobs"]
            tasks = [
                task
                for instance in (first, second)
                for task in await service.tasks(TENANT, instance.instance_id)
            ]
    finally:
        if not consumer.done():
            consumer.cancel()
    expected = {
        # Attempts count from 1.
        task_dedupe_key(str(task["id"]), 1): {
            "tenantId": TENANT,
            "taskId": str(task["id"]),
            "taskType": task["type"],
        }
        for task in tasks
    }
    assert len(expected) == 2
    assert {job["id"]: job["data"] for job in seen} == expected
    assert {job["name"] for job in seen} == {"task"}
