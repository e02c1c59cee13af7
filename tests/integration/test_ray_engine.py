"""The actor layer through a real local Ray: shards and pools under the engine loop.

One local Ray for the whole session (starting one takes seconds); each test starts
its own actors on its own database and kills them at the end.
"""

from __future__ import annotations

import asyncio
import functools
import json
import pathlib
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from e2e_handlers import Journal, slow_first_attempt_registry
from ray_support import ray_backend

from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.handlers import HandlerFactory, HandlerRegistry, TaskContext
from statefleet.engine.runtime import Engine, EngineSettings, InstanceRuntime, StartRequest
from statefleet.engine.runtime.definitions import deploy_definition
from statefleet.engine.store.db import create_pool
from statefleet.registries import noop_registry

with warnings.catch_warnings():
    # Ray's import pulls in modules that emit DeprecationWarnings of their own
    # (not statefleet's); pytest runs with warnings as errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray
    import ray.cloudpickle


pytestmark = pytest.mark.slow

HERE = pathlib.Path(__file__).parent
HELLO = json.loads((HERE.parent / "fixtures" / "hello-workflow.json").read_text())
TENANT = "acme"

# Registry factories defined here are shipped to the pool actors by value: this
# test module is not importable inside Ray's worker processes.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

FAST = EngineSettings(
    shards=2,
    pools=1,
    max_resident=1_000,
    sweep_interval_ms=200,
    sweep_grace_ms=500,
    task_default_lease_ms=30_000,
    task_lease_margin_ms=200,
    db_pool_size=3,
)

SLOW_TASK: dict[str, Any] = {
    "id": "slow",
    "initial": "working",
    "states": {
        "working": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {
                        "type": "SLOW",
                        "name": "slow",
                        "input": {},
                        "timeout": "PT3S",
                        "completionEvent": "DONE",
                    },
                }
            ],
            "on": {"DONE": "done"},
        },
        "done": {"type": "final"},
    },
}


def hello_registry() -> HandlerRegistry:
    return noop_registry("EMAIL")


def gated_hello_registry(gate: str, open_first: int) -> HandlerRegistry:
    """``EMAIL`` lets its first ``open_first`` tasks through, then waits for ``gate`` (a file).

    Built once per pool actor, so the count is that pool's; the file reaches it wherever
    Ray placed it on this machine.
    """
    passed = 0

    async def email(task: TaskContext) -> Any:
        nonlocal passed
        if passed < open_first:
            passed += 1
            return {}
        while not pathlib.Path(gate).exists():  # polls a condition; the test opens it
            await asyncio.sleep(0.01)
        return {}

    registry = HandlerRegistry()
    registry.register("EMAIL", email)
    return registry


@asynccontextmanager
async def engine_on(
    dsn: str, factory: HandlerFactory, settings: EngineSettings = FAST
) -> AsyncIterator[tuple[Engine, asyncpg.Pool[Any], InstanceRuntime]]:
    """The engine loop over Ray actors on the session's local Ray."""
    queue = MemoryQueue()
    pool = await create_pool(dsn, max_size=4)
    backend = ray_backend(dsn, factory, settings)
    engine = Engine(pool, queue, backend, settings)
    await engine.start()
    try:
        yield engine, pool, engine.runtime
    finally:
        await engine.stop()
        await backend.destroy()
        await queue.close()
        await pool.close()


async def start_batch(
    pool: asyncpg.Pool[Any], runtime: InstanceRuntime, spec: dict[str, Any], n: int
) -> list[uuid.UUID]:
    async with pool.acquire() as connection:
        definition = await deploy_definition(connection, TENANT, spec)
    ids: list[uuid.UUID] = []
    for offset in range(0, n, 1_000):
        chunk = [StartRequest()] * min(1_000, n - offset)
        ids += [r.instance_id for r in await runtime.start_many(TENANT, definition.id, chunk)]
    return ids


async def wait_done(pool: asyncpg.Pool[Any], n: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = await pool.fetchval("SELECT count(*) FROM workflow_instances WHERE status = 'done'")
        if done == n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{done} of {n} instances done")
        await asyncio.sleep(0.05)


async def assert_exactly_once(pool: asyncpg.Pool[Any], n: int, *, tasks: int = 1) -> None:
    """Every event applied once: init, WORKFLOW_START and one completion per task, and
    every one of the ``tasks`` tasks of each of the ``n`` instances run once."""
    repeated = await pool.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM workflow_events"
        " GROUP BY instance_id, event_id HAVING count(*) > 1) AS r"
    )
    assert repeated == 0
    per_instance = await pool.fetch(
        "SELECT count(*) AS n FROM workflow_events GROUP BY instance_id"
    )
    assert [r["n"] for r in per_instance] == [2 + tasks] * n
    attempts = await pool.fetch("SELECT attempts, status FROM tasks")
    assert [(r["attempts"], r["status"]) for r in attempts] == [(1, "succeeded")] * (n * tasks)


async def test_hello_end_to_end_through_ray(local_ray: None, database_dsn: str) -> None:
    async with engine_on(database_dsn, hello_registry) as (engine, pool, runtime):
        await start_batch(pool, runtime, HELLO, 200)
        await wait_done(pool, 200)
        await assert_exactly_once(pool, 200)
        stats = await engine.stats()
        assert sum(s["commits"] for s in stats) > 0
        assert all(s["commits"] > 0 for s in stats)  # both shards own instances


async def test_a_shard_killed_mid_run_loses_and_repeats_nothing(
    local_ray: None, database_dsn: str, tmp_path: pathlib.Path
) -> None:
    n, first = 400, 50
    gate = tmp_path / "gate"
    factory = functools.partial(gated_hello_registry, str(gate), first)
    succeeded = "SELECT count(*) FROM tasks WHERE status = 'succeeded'"
    # An event whose delivery died with the shard is re-sent by the sweeper, soon.
    settings = replace(FAST, sweep_event_grace_ms=2_000)
    async with engine_on(database_dsn, factory, settings) as (engine, pool, runtime):
        try:
            victim = engine.backend.shards[0]  # type: ignore[attr-defined]
            before = (await victim.stats.remote())["pid"]
            await start_batch(pool, runtime, HELLO, n)
            deadline = time.monotonic() + 90
            while await pool.fetchval(succeeded) < first:  # the rest wait at the gate
                assert time.monotonic() < deadline, "the first e-mails never went out"
                await asyncio.sleep(0.05)
            ray.kill(victim, no_restart=False)
            # Work was in flight at the kill: some e-mails sent, the others held, and no
            # instance can have finished without its e-mail.
            assert await pool.fetchval(succeeded) == first
            done = "SELECT count(*) FROM workflow_instances WHERE status = 'done'"
            assert await pool.fetchval(done) <= first < n
        finally:
            gate.touch()  # held handlers would keep the engine from stopping
        await wait_done(pool, n)
        await assert_exactly_once(pool, n)
        assert (await victim.stats.remote())["pid"] != before  # it was restarted


async def test_a_pool_killed_mid_task_runs_its_task_again(
    local_ray: None, database_dsn: str, tmp_path: pathlib.Path
) -> None:
    """The restarted pool gives up its previous life's claim at once (or the lease runs out)."""
    journal = Journal(tmp_path / "attempts.jsonl")
    factory = functools.partial(slow_first_attempt_registry, journal.path)
    async with engine_on(database_dsn, factory) as (engine, pool, runtime):
        await start_batch(pool, runtime, SLOW_TASK, 1)
        deadline = time.monotonic() + 30
        # The handler itself says it began: the task's row is running from its insert on
        # (claimed where it was created), before any pool has it.
        while journal.read() != [{"attempt": 1}]:
            assert time.monotonic() < deadline, "the task's handler never began"
            await asyncio.sleep(0.02)
        ray.kill(engine.backend.pools[0], no_restart=False)  # type: ignore[attr-defined]
        await wait_done(pool, 1)
        task = await pool.fetchrow("SELECT attempts, status, output FROM tasks")
        assert (task["attempts"], task["status"]) == (2, "succeeded")
        assert task["output"] == {"attempt": 2}
        assert journal.read() == [{"attempt": 1}, {"attempt": 2}]


#: Two e-mails one after the other: between them the instance waits, resident, in a shard
#: (a hello's one step after its start finishes it, so it is never resident).
TWO_EMAILS: dict[str, Any] = {
    "id": "two-emails",
    "initial": "start",
    "states": {
        "start": {
            "on": {
                "WORKFLOW_START": {
                    "target": "first",
                    "actions": [
                        {
                            "type": "createTask",
                            "task": {"type": "EMAIL", "name": "one", "completionEvent": "SENT"},
                        }
                    ],
                }
            }
        },
        "first": {
            "on": {
                "SENT": {
                    "target": "second",
                    "actions": [
                        {
                            "type": "createTask",
                            "task": {"type": "EMAIL", "name": "two", "completionEvent": "SENT"},
                        }
                    ],
                }
            }
        },
        "second": {"on": {"SENT": "done"}},
        "done": {"type": "final"},
    },
}


async def test_shard_residents_stay_within_max_resident(local_ray: None, database_dsn: str) -> None:
    n = 2_000
    settings = replace(FAST, max_resident=100)
    async with engine_on(database_dsn, hello_registry, settings) as (engine, pool, runtime):
        await start_batch(pool, runtime, TWO_EMAILS, n)
        await wait_done(pool, n)
        stats = await engine.stats()
        assert all(s["peak_resident"] <= 100 for s in stats), stats
        assert max(s["peak_resident"] for s in stats) > 0
        await assert_exactly_once(pool, n, tasks=2)
