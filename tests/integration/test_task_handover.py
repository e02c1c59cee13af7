"""Tasks claimed where they are created (docs/architecture.md): a due task a step makes
is inserted claimed for a pool and handed to it by the engine, with no broker job and
no claim of its own; a failed hand-over gives the tasks back to the broker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from runtime_support import FAST, engine_on, handlers_of, wait_for

from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.handlers import HandlerRegistry, TaskContext
from statefleet.engine.ports import QueueJob, TaskJobData
from statefleet.engine.ports.backend import PoolReply
from statefleet.engine.runtime import Engine, LocalBackend, WorkflowService
from statefleet.engine.store.db import create_pool

TENANT = "handover"


def _spec(task_type: str) -> dict[str, Any]:
    return {
        "id": "one-task",
        "initial": "start",
        "states": {
            "start": {
                "on": {
                    "WORKFLOW_START": {
                        "target": "working",
                        "actions": [
                            {
                                "type": "createTask",
                                "task": {
                                    "type": task_type,
                                    "name": "work",
                                    "completionEvent": "WORKED",
                                },
                            }
                        ],
                    }
                }
            },
            "working": {"on": {"WORKED": {"target": "done"}}},
            "done": {"type": "final"},
        },
    }


class _CountingQueue(MemoryQueue):
    """A memory queue that counts the task jobs the broker carries."""

    def __init__(self) -> None:
        super().__init__()
        self.task_jobs = 0

    async def enqueue(self, job: QueueJob, *, delay_ms: int = 0) -> None:
        self.task_jobs += job.queue == "workflow-task-runner"
        await super().enqueue(job, delay_ms=delay_ms)

    async def enqueue_many(self, jobs: Iterable[QueueJob]) -> None:
        jobs = list(jobs)
        self.task_jobs += sum(job.queue == "workflow-task-runner" for job in jobs)
        await super().enqueue_many(jobs)


class _FailingFirstHandover(LocalBackend):
    """The first batch of claimed tasks handed to a pool fails in the pool call (as a
    Ray pool that died would), before any handler ran."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.failed_claims: list[TaskJobData] = []

    async def run_tasks(self, pool: int, jobs: Sequence[TaskJobData]) -> PoolReply:
        if not self.failed_claims and any(job.claim is not None for job in jobs):
            self.failed_claims = list(jobs)
            raise ConnectionError("pool actor died")
        return await super().run_tasks(pool, jobs)


def _recording() -> tuple[HandlerRegistry, list[tuple[str, int]]]:
    """A ``WORK`` handler that records each attempt it runs (task id, attempt)."""
    runs: list[tuple[str, int]] = []

    async def work(task: TaskContext) -> Any:
        runs.append((task.task_id, task.attempt))
        return {"ok": True}

    registry = HandlerRegistry()
    registry.register("WORK", work)
    return registry, runs


async def test_a_due_task_runs_on_its_pool_without_a_broker_job_or_a_claim_of_its_own(
    database_dsn: str,
) -> None:
    registry, runs = _recording()
    pool = await create_pool(database_dsn, max_size=4)
    queue = _CountingQueue()
    try:
        async with engine_on(pool, queue, registry) as engine:
            service = WorkflowService(pool, engine.runtime)
            await service.deploy(TENANT, _spec("WORK"))
            started = [await service.start(TENANT, "one-task") for _ in range(5)]
            views = [await wait_for(service, TENANT, s.instance_id) for s in started]
            tasks = [(await service.tasks(TENANT, s.instance_id))[0] for s in started]
    finally:
        await queue.close()
        await pool.close()
    assert [v.status for v in views] == ["done"] * 5
    assert [(t["status"], t["attempts"]) for t in tasks] == [("succeeded", 1)] * 5
    assert sorted(runs) == sorted((str(t["id"]), 1) for t in tasks)
    assert queue.task_jobs == 0, "every task was handed over, none went through the broker"


async def test_a_failed_hand_over_gives_the_tasks_back_to_the_broker(
    database_dsn: str,
) -> None:
    registry, runs = _recording()
    pool = await create_pool(database_dsn, max_size=4)
    queue = _CountingQueue()
    # A lease far longer than the test: only the give-back can free the task in time.
    settings = dataclasses.replace(FAST, task_default_lease_ms=600_000)
    backend = _FailingFirstHandover(pool, handlers_of(registry), settings)
    try:
        async with engine_on(pool, queue, registry, settings=settings, backend=backend) as engine:
            service = WorkflowService(pool, engine.runtime)
            await service.deploy(TENANT, _spec("WORK"))
            started = await service.start(TENANT, "one-task")
            view = await wait_for(service, TENANT, started.instance_id)
            (task,) = await service.tasks(TENANT, started.instance_id)
    finally:
        await queue.close()
        await pool.close()
    assert [job.task_id for job in backend.failed_claims] == [str(task["id"])]
    assert view.status == "done"
    # The claimed attempt never ran; its lease expired at once and the broker's job was
    # claimed as the next attempt (one counted for the hand-over: a handler may have run).
    assert runs == [(str(task["id"]), 2)]
    assert (task["status"], task["attempts"]) == ("succeeded", 2)
    assert queue.task_jobs == 1


class _Gated:
    """A ``GATED`` handler that records the tasks it runs and holds the first (or every)
    one until ``release`` is set."""

    def __init__(self, *, hold_all: bool) -> None:
        self.release = asyncio.Event()
        self.running: list[str] = []
        self._hold_all = hold_all

    async def __call__(self, task: TaskContext) -> Any:
        self.running.append(task.task_id)
        if self._hold_all or len(self.running) == 1:
            await self.release.wait()
        return {"ok": True}


@contextlib.asynccontextmanager
async def _limited_to_one(
    database_dsn: str, handler: _Gated
) -> AsyncIterator[tuple[Engine, WorkflowService, _CountingQueue]]:
    """An engine that hands over one task at a time (``task_handover_limit=1``)."""
    registry = HandlerRegistry()
    registry.register("GATED", handler)
    pool = await create_pool(database_dsn, max_size=6)
    queue = _CountingQueue()
    settings = dataclasses.replace(FAST, task_handover_limit=1)
    try:
        async with engine_on(pool, queue, registry, settings=settings) as engine:
            service = WorkflowService(pool, engine.runtime)
            await service.deploy(TENANT, _spec("GATED"))
            yield engine, service, queue
    finally:
        await queue.close()
        await pool.close()


async def test_past_the_hand_over_limit_new_tasks_go_through_the_broker(
    database_dsn: str,
) -> None:
    handler = _Gated(hold_all=True)
    async with _limited_to_one(database_dsn, handler) as (engine, service, queue):
        first = await service.start(TENANT, "one-task")
        await _until(lambda: len(handler.running) == 1)
        assert engine.handed_over == 1
        assert queue.task_jobs == 0
        # One handed over and unfinished: the limit is reached, the next goes through
        # the broker (pending, no lease) and runs there.
        second = await service.start(TENANT, "one-task")
        await _until(lambda: len(handler.running) == 2)
        assert queue.task_jobs == 1
        handler.release.set()
        for started in (first, second):
            view = await wait_for(service, TENANT, started.instance_id)
            assert view.status == "done"


async def test_a_task_stops_counting_against_the_limit_once_its_pool_returns(
    database_dsn: str,
) -> None:
    """The limit bounds tasks waiting in pools (their leases renewed there), not
    completions on their way to a shard: with the first task's completion held up at
    its step, the next task is handed over too."""
    handler = _Gated(hold_all=False)
    async with _limited_to_one(database_dsn, handler) as (engine, service, queue):
        first = await service.start(TENANT, "one-task")
        await _until(lambda: len(handler.running) == 1)
        async with engine.pool.acquire() as blocker, blocker.transaction():
            # The first instance's next step (its completion) waits for this lock.
            await blocker.execute(
                "SELECT 1 FROM workflow_instances WHERE id = $1 FOR UPDATE",
                first.instance_id,
            )
            handler.release.set()
            await _until(lambda: engine.handed_over == 0)
            assert (await service.get(TENANT, first.instance_id)).status == "running"
            second = await service.start(TENANT, "one-task")
            await _until(lambda: len(handler.running) == 2)
            assert queue.task_jobs == 0, "the second task was handed over too"
        for started in (first, second):
            view = await wait_for(service, TENANT, started.instance_id)
            assert view.status == "done"


async def _until(condition: Any, timeout: float = 20.0) -> None:
    """Waits for ``condition()`` (set by a handler), checking at each loop turn."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
