"""The instance shard and the task executor on real Postgres, without Ray or a queue.

Outbox rows come back to the caller (as they do to the engine loop); the test
plays the engine loop by feeding event rows to the shard and task rows to the executor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from statefleet.engine.handlers import HandlerRegistry, TaskContext
from statefleet.engine.ports.queue import (
    ORCHESTRATOR_QUEUE,
    TASK_RUNNER_QUEUE,
    EventJobData,
    TaskJobData,
)
from statefleet.engine.runtime.definitions import deploy_definition
from statefleet.engine.runtime.executor import ExecutorSettings, TaskExecutor
from statefleet.engine.runtime.instances import START_EVENT, InstanceRuntime, StartRequest
from statefleet.engine.runtime.outbox import CollectingPublisher, OutboxRow
from statefleet.engine.runtime.shard import InstanceShard, ShardSettings
from statefleet.engine.store.db import create_pool
from statefleet.registries import noop_registry

HERE = pathlib.Path(__file__).parent
HELLO = json.loads((HERE.parent / "fixtures" / "hello-workflow.json").read_text())
TENANT = "acme"
COUNTER: dict[str, Any] = {
    "id": "counter",
    "initial": "counting",
    "context": {"n": 0},
    "states": {
        "counting": {
            "on": {
                "INC": {
                    "actions": [
                        {"type": "assign", "path": "n", "value": {"$expr": "context.n + 1"}}
                    ]
                }
            }
        }
    },
}


def events_of(rows: Sequence[OutboxRow]) -> list[EventJobData]:
    """The events of ``rows``: as the engine delivers them, a task's success with its
    completion (``EventJobData.success``) for the step to commit."""
    return [
        r.event
        or EventJobData(
            r.data["tenantId"],
            r.data["instanceId"],
            r.data["event"]["id"],
            r.data["event"]["type"],
            r.data["event"]["payload"],
        )
        for r in rows
        if r.queue == ORCHESTRATOR_QUEUE
    ]


def tasks_of(rows: Sequence[OutboxRow]) -> list[TaskJobData]:
    return [
        TaskJobData(r.data["tenantId"], r.data["taskId"])
        for r in rows
        if r.queue == TASK_RUNNER_QUEUE
    ]


async def start(
    pool: asyncpg.Pool[Any],
    spec: dict[str, Any],
    n: int,
    *,
    start_event: str | None = START_EVENT,
) -> tuple[list[uuid.UUID], list[OutboxRow]]:
    async with pool.acquire() as connection:
        definition = await deploy_definition(connection, TENANT, spec)
    starter = CollectingPublisher()
    runtime = InstanceRuntime(pool, starter)
    results = await runtime.start_many(
        TENANT, definition.id, [StartRequest()] * n, start_event=start_event
    )
    return [r.instance_id for r in results], starter.take()


def shard_on(pool: asyncpg.Pool[Any], settings: ShardSettings) -> InstanceShard:
    return InstanceShard(
        lambda shard: InstanceRuntime(pool, CollectingPublisher(), checkpoints=shard), settings
    )


async def test_hello_runs_through_a_shard_and_an_executor(database_dsn: str) -> None:
    pool = await create_pool(database_dsn)
    shard = shard_on(pool, ShardSettings(max_resident=20, max_batch=16))
    executor = TaskExecutor(pool, noop_registry("EMAIL"))
    try:
        _ids, rows = await start(pool, HELLO, 50)
        while rows:
            applied = await shard.submit(events_of(rows))
            done = await executor.run_batch(tasks_of(rows))
            assert done.failed == []
            rows = applied.outbox + done.outbox
        assert shard.resident_count() == 0  # finished instances are not kept
        statuses = await pool.fetch(
            "SELECT status, count(*) FROM workflow_instances GROUP BY status"
        )
        assert {r["status"]: r["count"] for r in statuses} == {"done": 50}
        attempts = await pool.fetch("SELECT status, attempts FROM tasks")
        assert [(r["status"], r["attempts"]) for r in attempts] == [("succeeded", 1)] * 50
        assert shard.peak_resident <= 20
    finally:
        await shard.close()
        await pool.close()


async def test_a_slot_is_free_once_its_handler_returns_while_the_outcome_commits(
    database_dsn: str,
) -> None:
    """One slot for EMAIL: the second attempt's handler runs while the first attempt's
    outcome (a failure, to be retried) is still waiting to commit (its row locked by
    another transaction here). A success commits with the step that applies its
    completion, so the executor never waits for one: the executor answers the first
    attempt "succeeded" the moment its handler returns, with its completion uncommitted."""
    pool = await create_pool(database_dsn)
    entered: list[str] = []
    first_entered, locked, second_ran = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def email(task: TaskContext) -> dict[str, Any]:
        entered.append(task.task_id)
        if len(entered) == 1:
            first_entered.set()
            await locked.wait()
            raise ConnectionError("smtp went away")
        second_ran.set()
        return {}

    handlers = HandlerRegistry()
    handlers.register("EMAIL", email)
    executor = TaskExecutor(pool, handlers, ExecutorSettings(default_limit=1))
    try:
        _ids, rows = await start(pool, HELLO, 2)  # each start creates its task
        jobs = tasks_of(rows)
        assert len(jobs) == 2
        async with pool.acquire() as blocker, blocker.transaction():
            batch = asyncio.create_task(executor.run_batch([jobs[0]]))
            await asyncio.wait_for(first_entered.wait(), 10)
            # Claimed (its handler runs): this lock makes its retry wait, once it failed.
            await blocker.execute(
                "SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", uuid.UUID(jobs[0].task_id)
            )
            locked.set()
            second = asyncio.create_task(executor.run_batch([jobs[1]]))
            await asyncio.wait_for(second_ran.wait(), 10)
            assert not batch.done()  # the first attempt's retry is still waiting for the lock
            done = await asyncio.wait_for(second, 10)
            assert done.results == ["succeeded"]
            (completion,) = [r for r in done.outbox if r.event is not None]
            assert completion.event is not None
            assert completion.event.success is not None
            status = await pool.fetchval(
                "SELECT status FROM tasks WHERE id = $1", uuid.UUID(jobs[1].task_id)
            )
            assert status == "running"  # until a step applies the completion
        assert (await batch).results == ["retrying"]
        assert entered == [jobs[0].task_id, jobs[1].task_id]
    finally:
        await pool.close()


async def test_a_resident_copy_overtaken_by_another_writer_is_reloaded(
    database_dsn: str,
) -> None:
    pool = await create_pool(database_dsn)
    shard = shard_on(pool, ShardSettings())
    other = InstanceRuntime(pool, CollectingPublisher())
    try:
        (instance_id,), _ = await start(pool, COUNTER, 1, start_event=None)

        def inc(n: int) -> EventJobData:
            return EventJobData(TENANT, str(instance_id), f"inc-{n}", "INC", {})

        await shard.submit([inc(1)])
        assert shard.resident_count() == 1
        await other.apply([inc(2)])  # another engine: the shard's copy is now stale
        result = await shard.submit([inc(3), inc(2)])
        assert [o.outcome for o in result.outcomes] == ["applied", "duplicate"]
        snapshot = await pool.fetchval(
            "SELECT snapshot FROM workflow_instances WHERE id = $1", instance_id
        )
        assert snapshot["context"]["n"] == 3
        count = await pool.fetchval(
            "SELECT count(*) FROM workflow_events WHERE instance_id = $1", instance_id
        )
        assert count == 4  # init + three increments, each once
    finally:
        await shard.close()
        await pool.close()


async def test_an_interactive_event_is_committed_before_admitted_ones_waiting(
    database_dsn: str,
) -> None:
    pool = await create_pool(database_dsn)
    # One commit at a time, two events each: what waits is ordered by the shard.
    shard = shard_on(pool, ShardSettings(max_batch=2, commit_concurrency=1))
    try:
        ids, _ = await start(pool, COUNTER, 9, start_event=None)
        events = [EventJobData(TENANT, str(i), f"inc-{i}", "INC", {}) for i in ids]
        bulk = [dataclasses.replace(e, admitted=True) for e in events[:8]]
        finished: list[str] = []

        async def deliver(name: str, batch: list[EventJobData]) -> None:
            await shard.submit(batch)
            finished.append(name)

        held = [asyncio.create_task(deliver(f"bulk{i}", [e])) for i, e in enumerate(bulk)]
        await asyncio.sleep(0)  # the first commit is under way with two of them
        single = asyncio.create_task(deliver("single", [events[8]]))
        await asyncio.gather(*held, single)
    finally:
        await shard.close()
        await pool.close()
    # Behind the first commit's two, the interactive event went first.
    assert finished.index("single") <= 3
    assert len(finished) == 9
