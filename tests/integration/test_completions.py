"""A task's success is committed by the step that applies its completion
(engine/runtime/completions.py): no transaction and no outbox row of its own, the
lease checked in the step, late results recorded, and a fallback to the outbox when the
step cannot take it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from runtime_support import FAST, engine_on, handlers_of, wait_for

from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.handlers import HandlerRegistry, TaskContext
from statefleet.engine.ports.backend import ShardReply, TaskClaim
from statefleet.engine.ports.queue import EventJobData, TaskJobData, TaskSuccess
from statefleet.engine.runtime import LocalBackend, WorkflowService
from statefleet.engine.runtime.executor import TaskExecutor
from statefleet.engine.runtime.instances import InstanceRuntime, event_outbox_row
from statefleet.engine.runtime.outbox import CollectingPublisher
from statefleet.engine.runtime.shard import InstanceShard, ShardSettings
from statefleet.engine.store.db import create_pool

pytestmark = pytest.mark.asyncio

TENANT = "completions"
SPEC: dict[str, Any] = {
    "id": "one-task",
    "initial": "working",
    "states": {
        "working": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {"type": "WORK", "name": "work", "completionEvent": "WORKED"},
                }
            ],
            "on": {"WORKED": "done"},
        },
        "done": {"type": "final"},
    },
}
#: Every outbox insert, kept by a trigger: what the completions did not write.
OUTBOX_LOG = """
CREATE TABLE outbox_log (dedupe_key text NOT NULL);
CREATE FUNCTION outbox_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO outbox_log VALUES (NEW.dedupe_key); RETURN NEW; END $$;
CREATE TRIGGER outbox_logged AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_logged();
"""


def _recording() -> tuple[HandlerRegistry, list[str]]:
    runs: list[str] = []

    async def work(task: TaskContext) -> Any:
        runs.append(task.task_id)
        return {"ok": True}

    registry = HandlerRegistry()
    registry.register("WORK", work)
    return registry, runs


@pytest.fixture
async def pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    opened = await create_pool(database_dsn, max_size=4)
    await opened.execute(OUTBOX_LOG)
    try:
        yield opened
    finally:
        await opened.close()


async def _logged(pool: asyncpg.Pool[Any]) -> list[str]:
    return [r["dedupe_key"] for r in await pool.fetch("SELECT dedupe_key FROM outbox_log")]


async def test_a_success_commits_with_the_step_that_applies_its_completion(
    pool: asyncpg.Pool[Any],
) -> None:
    registry, runs = _recording()
    queue = MemoryQueue()
    try:
        async with engine_on(pool, queue, registry) as engine:
            service = WorkflowService(pool, engine.runtime)
            await service.deploy(TENANT, SPEC)
            started = [await service.start(TENANT, "one-task") for _ in range(5)]
            views = [await wait_for(service, TENANT, s.instance_id) for s in started]
            tasks = [(await service.tasks(TENANT, s.instance_id))[0] for s in started]
    finally:
        await queue.close()
    assert [v.status for v in views] == ["done"] * 5
    assert [(t["status"], t["attempts"], t["output"]) for t in tasks] == [
        ("succeeded", 1, {"ok": True})
    ] * 5
    assert sorted(runs) == sorted(str(t["id"]) for t in tasks)
    assert await _logged(pool) == [], "no completion went through the outbox"


def _shard(pool: asyncpg.Pool[Any]) -> InstanceShard:
    return InstanceShard(
        lambda shard: InstanceRuntime(pool, CollectingPublisher(), checkpoints=shard),
        ShardSettings(),
    )


async def _waiting(pool: asyncpg.Pool[Any], owner: str) -> tuple[uuid.UUID, uuid.UUID]:
    """An instance in ``working`` whose task's attempt runs under ``owner``'s lease."""
    service = WorkflowService(pool, InstanceRuntime(pool, CollectingPublisher()))
    await service.deploy(TENANT, SPEC)
    started = await service.start(TENANT, "one-task", {}, start_event=None)
    (task,) = await service.tasks(TENANT, started.instance_id)
    await pool.execute(
        "UPDATE tasks SET status = 'running', attempts = 1, lease_owner = $2,"
        " lease_expires_at = now() + interval '1 minute' WHERE id = $1",
        task["id"],
        owner,
    )
    return started.instance_id, task["id"]


def _completion(instance_id: uuid.UUID, task_id: uuid.UUID, owner: str) -> EventJobData:
    done_id = f"task-{task_id}-done"
    success = TaskSuccess(task_id, owner, '{"ok": true}', done_id)
    row = event_outbox_row(
        TENANT, instance_id, done_id, "WORKED", {"ok": True}, stored=False, success=success
    )
    assert row.event is not None
    return row.event


async def _state(pool: asyncpg.Pool[Any], instance_id: uuid.UUID) -> tuple[str, Any]:
    row = await pool.fetchrow(
        "SELECT status, snapshot->'value' AS value FROM workflow_instances WHERE id = $1",
        instance_id,
    )
    assert row is not None
    return row["status"], row["value"]


async def _task(pool: asyncpg.Pool[Any], task_id: uuid.UUID) -> tuple[str, str | None]:
    row = await pool.fetchrow("SELECT status, lease_owner FROM tasks WHERE id = $1", task_id)
    assert row is not None
    return row["status"], row["lease_owner"]


async def test_the_completion_of_an_attempt_that_lost_its_lease_is_dropped(
    pool: asyncpg.Pool[Any],
) -> None:
    instance_id, task_id = await _waiting(pool, owner="pool-b")
    shard = _shard(pool)
    try:
        lost = await shard.submit([_completion(instance_id, task_id, owner="pool-a")])
        assert [o.outcome for o in lost.outcomes] == ["superseded"]
        assert await _state(pool, instance_id) == ("running", "working")
        assert await _task(pool, task_id) == ("running", "pool-b")
        # The attempt that holds the lease counts.
        won = await shard.submit([_completion(instance_id, task_id, owner="pool-b")])
        assert [o.outcome for o in won.outcomes] == ["applied"]
    finally:
        await shard.close()
    assert await _state(pool, instance_id) == ("done", "done")
    assert await _task(pool, task_id) == ("succeeded", None)


async def test_a_cancelled_tasks_completion_is_recorded_not_applied(
    pool: asyncpg.Pool[Any],
) -> None:
    instance_id, task_id = await _waiting(pool, owner="pool-a")
    shard = _shard(pool)
    try:
        # Resident in the shard, so the late record must also drop its copy.
        ping = EventJobData(TENANT, str(instance_id), "ping-1", "PING", {})
        assert [o.outcome for o in (await shard.submit([ping])).outcomes] == ["applied"]
        assert shard.resident_count() == 1
        await pool.execute("UPDATE tasks SET status = 'cancelled' WHERE id = $1", task_id)
        late = await shard.submit([_completion(instance_id, task_id, owner="pool-a")])
        assert [o.outcome for o in late.outcomes] == ["late"]
        assert await _state(pool, instance_id) == ("running", "working")
        # The next event sees the version the late record moved on to.
        ping = EventJobData(TENANT, str(instance_id), "ping-2", "PING", {})
        assert [o.outcome for o in (await shard.submit([ping])).outcomes] == ["applied"]
    finally:
        await shard.close()
    events = await pool.fetch(
        "SELECT event_id, handled, state_after FROM workflow_events"
        " WHERE instance_id = $1 ORDER BY seq",
        instance_id,
    )
    assert [(e["event_id"], e["handled"]) for e in events][-3:] == [
        ("ping-1", False),
        (f"task-{task_id}-done", False),
        ("ping-2", False),
    ]
    assert await _task(pool, task_id) == ("cancelled", "pool-a")


async def test_a_success_whose_step_loses_the_version_check_is_applied_from_the_outbox(
    pool: asyncpg.Pool[Any],
) -> None:
    instance_id, task_id = await _waiting(pool, owner="pool-a")
    shard = _shard(pool)
    other = InstanceRuntime(pool, CollectingPublisher())
    try:
        ping = EventJobData(TENANT, str(instance_id), "ping-1", "PING", {})
        await shard.submit([ping])
        assert shard.resident_count() == 1
        # Another writer moves the instance on: the shard's copy is stale.
        await other.apply([EventJobData(TENANT, str(instance_id), "ping-2", "PING", {})])
        lost = await shard.submit([_completion(instance_id, task_id, owner="pool-a")])
        assert [o.outcome for o in lost.outcomes] == ["requeued"]
        # The success is committed; its event waits in the outbox, no longer carrying it.
        assert await _task(pool, task_id) == ("succeeded", None)
        assert await _state(pool, instance_id) == ("running", "working")
        assert await _logged(pool) == [f"task-{task_id}-done"]
        (row,) = lost.outbox
        assert row.stored
        assert row.event is not None
        assert row.event.success is None
        applied = await shard.submit([row.event])
        assert [o.outcome for o in applied.outcomes] == ["applied"]
    finally:
        await shard.close()
    assert await _state(pool, instance_id) == ("done", "done")


class _FailingFirstCompletion(LocalBackend):
    """The first shard call carrying a task's success fails (as a Ray shard that died
    would), before any step ran."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.failed: list[EventJobData] = []

    async def apply(
        self, shard: int, events: Sequence[EventJobData], claim: TaskClaim | None = None
    ) -> ShardReply:
        if not self.failed and any(e.success is not None for e in events):
            self.failed = list(events)
            raise ConnectionError("shard actor died")
        return await super().apply(shard, events, claim)


async def test_a_success_whose_shard_call_fails_is_committed_without_a_step(
    pool: asyncpg.Pool[Any],
) -> None:
    registry, runs = _recording()
    queue = MemoryQueue()
    # A lease far longer than the test: only the fallback can settle the task in time.
    settings = dataclasses.replace(FAST, task_default_lease_ms=600_000)
    backend = _FailingFirstCompletion(pool, handlers_of(registry), settings)
    try:
        async with engine_on(pool, queue, registry, settings=settings, backend=backend) as engine:
            service = WorkflowService(pool, engine.runtime)
            await service.deploy(TENANT, SPEC)
            started = await service.start(TENANT, "one-task")
            view = await wait_for(service, TENANT, started.instance_id)
            (task,) = await service.tasks(TENANT, started.instance_id)
    finally:
        await queue.close()
    assert [e.event_id for e in backend.failed] == [f"task-{task['id']}-done"]
    assert view.status == "done"
    assert runs == [str(task["id"])], "the handler ran once"
    assert (task["status"], task["attempts"]) == ("succeeded", 1)
    assert await _logged(pool) == [f"task-{task['id']}-done"]


async def test_a_success_its_batch_keeps_waiting_is_committed_by_its_pool(
    pool: asyncpg.Pool[Any],
) -> None:
    """A batch returns when its last handler has: a fast attempt's success does not wait
    for a slow one beside it, but is committed alone after the pool's wait, its event
    stored in the outbox (where the sweeper finds it if the batch takes longer still)."""
    gate = asyncio.Event()
    fast_done = asyncio.Event()

    async def work(task: TaskContext) -> Any:
        if task.input.get("slow"):
            await gate.wait()
        else:
            fast_done.set()
        return {"ok": True}

    registry = HandlerRegistry()
    registry.register("WORK", work)
    service = WorkflowService(pool, InstanceRuntime(pool, CollectingPublisher()))
    spec = json.loads(json.dumps(SPEC))
    spec["states"]["working"]["entry"][0]["task"]["input"] = {"slow": {"$expr": "context.slow"}}
    spec["context"] = {"slow": False}
    await service.deploy(TENANT, spec)
    jobs = []
    for slow in (True, False):
        started = await service.start(TENANT, "one-task", {"slow": slow}, start_event=None)
        (task,) = await service.tasks(TENANT, started.instance_id)
        jobs.append(TaskJobData(TENANT, str(task["id"])))
    executor = TaskExecutor(pool, registry)
    executor.settle_wait_s = 0.05
    batch = asyncio.create_task(executor.run_batch(jobs))
    await asyncio.wait_for(fast_done.wait(), 10)
    fast = uuid.UUID(jobs[1].task_id)
    async with asyncio.timeout(10):
        while (await _task(pool, fast))[0] != "succeeded":
            await asyncio.sleep(0.01)
    assert not batch.done(), "the slow handler still holds the batch"
    assert await _logged(pool) == [f"task-{fast}-done"]
    gate.set()
    result = await asyncio.wait_for(batch, 10)
    assert result.results == ["succeeded", "succeeded"]
    stored = [r for r in result.outbox if r.stored]
    assert [r.dedupe_key for r in stored] == [f"task-{fast}-done"]
    # The slow one's success came back uncommitted, for a step.
    waiting = [r for r in result.outbox if r.event is not None and r.event.success]
    assert [r.event.success.task_id for r in waiting if r.event] == [uuid.UUID(jobs[0].task_id)]
    assert (await _task(pool, uuid.UUID(jobs[0].task_id)))[0] == "running"
