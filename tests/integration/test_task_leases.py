"""Short task leases: a heartbeat keeps a long handler's claim, and a restarted pool
(same identity, new life) gives up the claims of its previous life at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from runtime_support import running_engine

from statefleet.engine.handlers import HandlerRegistry, TaskContext
from statefleet.engine.ports.queue import TaskJobData
from statefleet.engine.runtime.executor import ExecutorResult, ExecutorSettings, TaskExecutor
from statefleet.engine.runtime.tasks import TaskRunnerSettings

pytestmark = pytest.mark.asyncio

TENANT = "acme"
SPEC: dict[str, Any] = {
    "id": "slow",
    "initial": "working",
    "states": {
        "working": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {"type": "SLOW", "name": "work", "completionEvent": "DONE"},
                }
            ],
            "on": {"DONE": "done"},
        },
        "done": {"type": "final"},
    },
}


class Slow:
    """A handler that runs until ``release`` is set, counting its calls."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.calls = 0

    async def __call__(self, task: TaskContext) -> dict[str, Any]:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return {"ok": True}


def registry(handler: Slow) -> HandlerRegistry:
    found = HandlerRegistry()
    found.register("SLOW", handler)
    return found


def executor(pool: asyncpg.Pool[Any], handler: Slow, lease_ms: int, identity: str) -> TaskExecutor:
    tasks = TaskRunnerSettings(default_lease_ms=lease_ms, lease_margin_ms=100)
    return TaskExecutor(pool, registry(handler), ExecutorSettings(tasks=tasks), identity=identity)


async def settle(running: Any, result: ExecutorResult) -> None:
    """What the engine does with a batch's successes: the step that applies their
    completions commits them (``completions.py``)."""
    await running.engine.runtime.apply([r.event for r in result.outbox if r.event is not None])


async def lease_of(pool: asyncpg.Pool[Any], task_id: str) -> asyncpg.Record:
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT status, lease_owner, lease_expires_at, attempts, now() AS db_now"
            " FROM tasks WHERE id = $1",
            uuid.UUID(task_id),
        )
    assert row is not None
    return row


async def start_one(running: Any) -> str:
    await running.service.deploy(TENANT, SPEC)
    started = await running.service.start(TENANT, "slow", {}, start_event=None)
    (task,) = await running.service.tasks(TENANT, started.instance_id)
    return str(task["id"])


async def test_a_heartbeat_keeps_a_long_handlers_claim(database_dsn: str) -> None:
    handler = Slow()
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as running:
        task_id = await start_one(running)
        job = [TaskJobData(TENANT, task_id)]
        first = executor(running.pool, handler, lease_ms=600, identity="pool-a")
        batch = asyncio.create_task(first.run_batch(job))
        await asyncio.wait_for(handler.started.wait(), 10)
        # Outlive the 600 ms lease several times over: each renewal moves its expiry on.
        expiries: list[datetime] = []
        deadline = time.monotonic() + 20
        while len(set(expiries)) < 4:
            row = await lease_of(running.pool, task_id)
            assert row["status"] == "running"
            assert row["lease_owner"] == first.worker_id
            assert row["lease_expires_at"] > row["db_now"], "the lease lapsed"
            expiries.append(row["lease_expires_at"])
            assert time.monotonic() < deadline, expiries
            await asyncio.sleep(0.05)
        # Still claimed: another pool cannot take it.
        other = executor(running.pool, Slow(), lease_ms=600, identity="pool-b")
        assert (await other.run_batch(job)).results == ["not_claimable"]
        handler.release.set()
        assert (await batch).results == ["succeeded"]
        assert handler.calls == 1


async def test_a_restarted_pool_gives_up_its_previous_claims_at_once(database_dsn: str) -> None:
    dead = Slow()
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as running:
        task_id = await start_one(running)
        job = [TaskJobData(TENANT, task_id)]
        # A lease of a minute: only giving it up can free the task before then.
        before = executor(running.pool, dead, lease_ms=60_000, identity="pool-7")
        batch = asyncio.create_task(before.run_batch(job))
        await asyncio.wait_for(dead.started.wait(), 10)
        batch.cancel()  # the old life dies with its claim held
        with pytest.raises(asyncio.CancelledError):
            await batch
        assert (await lease_of(running.pool, task_id))["lease_owner"] == before.worker_id

        elsewhere = executor(running.pool, Slow(), lease_ms=60_000, identity="pool-8")
        assert (await elsewhere.run_batch(job)).results == ["not_claimable"]

        again = Slow()
        again.release.set()
        after = executor(running.pool, again, lease_ms=60_000, identity="pool-7")
        assert after.worker_id != before.worker_id
        result = await after.run_batch(job)
        assert result.results == ["succeeded"]
        assert again.calls == 1
        assert any(r.data == {"tenantId": TENANT, "taskId": task_id} for r in result.outbox)
        await settle(running, result)
        row = await lease_of(running.pool, task_id)
        assert (row["status"], row["attempts"]) == ("succeeded", 2)


async def test_each_failed_attempt_logs_one_line_with_its_error_and_ids(
    database_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(task: TaskContext) -> None:
        raise ConnectionError("provider unreachable")

    found = HandlerRegistry()
    found.register("SLOW", broken)
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as running:
        task_id = await start_one(running)
        runner = TaskExecutor(running.pool, found, identity=None)
        with caplog.at_level("WARNING", logger="statefleet.engine.runtime.tasks"):
            assert (await runner.run_batch([TaskJobData(TENANT, task_id)])).results == ["retrying"]
    (record,) = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert "ConnectionError: provider unreachable; retrying" in record.getMessage()
    assert "attempt 1/3" in record.getMessage()
    assert record.exc_info is None  # one line, no traceback
    assert (record.tenant_id, record.task_id) == (TENANT, task_id)  # type: ignore[attr-defined]
    assert record.instance_id  # type: ignore[attr-defined]


async def test_a_success_committed_while_its_lease_is_renewed_is_not_dropped(
    database_dsn: str,
) -> None:
    """Successes are found by row address; a renewal moves the row, and the success
    must still land (dropping it left the attempt to run a second time)."""

    async def quick(task: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(0.001)
        return {"ok": True}

    found = HandlerRegistry()
    found.register("SLOW", quick)
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as running:
        await running.service.deploy(TENANT, SPEC)
        jobs = []
        for _ in range(400):
            started = await running.service.start(TENANT, "slow", {}, start_event=None)
            (task,) = await running.service.tasks(TENANT, started.instance_id)
            jobs.append(TaskJobData(TENANT, str(task["id"])))
        # A 30 ms lease: the heartbeat renews every 10 ms, all through the commits.
        tasks = TaskRunnerSettings(default_lease_ms=30, lease_margin_ms=10)
        pool = TaskExecutor(
            running.pool, found, ExecutorSettings(tasks=tasks), identity="pool-renewing"
        )
        result = await pool.run_batch(jobs)
        results = result.results
        await settle(running, result)
        async with running.pool.acquire() as connection:
            states = await connection.fetch(
                "SELECT status, attempts, count(*) AS n FROM tasks GROUP BY status, attempts"
            )
    assert results == ["succeeded"] * len(jobs)
    assert [(r["status"], r["attempts"], r["n"]) for r in states] == [("succeeded", 1, 400)]


async def two_running_tasks(running: Any, owner: str) -> list[uuid.UUID]:
    """Two instances' tasks, both running under ``owner``'s lease for a minute."""
    await running.service.deploy(TENANT, SPEC)
    ids = []
    for _ in range(2):
        started = await running.service.start(TENANT, "slow", {}, start_event=None)
        (task,) = await running.service.tasks(TENANT, started.instance_id)
        ids.append(task["id"])
    await running.pool.execute(
        "UPDATE tasks SET status = 'running', attempts = 1, lease_owner = $1,"
        " lease_expires_at = now() + interval '1 minute'",
        owner,
    )
    return ids


async def test_a_heartbeat_never_waits_for_a_success_being_committed(
    database_dsn: str,
) -> None:
    """The heartbeat renews every running attempt in one statement while successes are
    committed in groups: if it waited for a row a success holds, the two could lock the
    same rows in opposite orders and deadlock, and an aborted success runs its attempts
    again. A locked row is skipped instead (and renewed at the next beat)."""
    from statefleet.engine.runtime.tasks import SQL

    async with running_engine(database_dsn, HandlerRegistry(), start=False) as running:
        owner = "pool-a"
        ids = await two_running_tasks(running, owner)
        first, second = ids
        succeed = SQL["succeed_tasks"]
        async with running.pool.acquire() as committing, committing.transaction():
            # A success being committed holds the second row...
            done = await committing.fetch(succeed, [TENANT], [second], [owner], ['{"ok":1}'])
            assert [r["id"] for r in done] == [second]
            async with running.pool.acquire() as beating:
                # ...while the heartbeat renews both: it must not wait for the held row.
                renewed = await asyncio.wait_for(
                    beating.execute(
                        SQL["renew_leases"], [TENANT, TENANT], ids, [60_000, 60_000], owner
                    ),
                    timeout=10,
                )
            assert renewed == "UPDATE 1"
            # The same success goes on to the first row, which the heartbeat no longer holds.
            done = await committing.fetch(succeed, [TENANT], [first], [owner], ['{"ok":1}'])
            assert [r["id"] for r in done] == [first]
        states = await running.pool.fetch("SELECT status, attempts FROM tasks")
    assert sorted((r["status"], r["attempts"]) for r in states) == [("succeeded", 1)] * 2


async def test_a_group_of_successes_aborted_as_a_deadlock_victim_is_committed_again(
    database_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Postgres breaks a deadlock by aborting one transaction. When that is a group of
    successes, their handlers have run already: the group is committed again, not
    dropped (a dropped success runs its attempt a second time after its lease)."""
    from statefleet.engine.ports.queue import TaskSuccess
    from statefleet.engine.runtime.completions import commit
    from statefleet.engine.runtime.instances import event_outbox_row

    async with running_engine(database_dsn, HandlerRegistry(), start=False) as running:
        ids = await two_running_tasks(running, "pool-victim")
        first, second = ids
        records = {r["id"]: r for r in await running.pool.fetch("SELECT * FROM tasks ORDER BY id")}
        successes = []
        for i in ids:
            success = TaskSuccess(i, "pool-victim", '{"ok": true}', f"task-{i}-done")
            row = event_outbox_row(
                TENANT,
                records[i]["instance_id"],
                f"task-{i}-done",
                "DONE",
                {},
                stored=False,
                success=success,
            )
            successes.append((TENANT, success, [row]))
        lock = "SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE"
        async with running.pool.acquire() as other:
            transaction = other.transaction()
            await transaction.start()
            # This side checks for deadlocks last, so the group of successes is the victim.
            await other.execute("SET LOCAL deadlock_timeout = '30s'")
            await other.execute(lock, second)
            committing = asyncio.create_task(commit(running.pool, successes))
            # The group takes the first row, then waits for the second...
            async with asyncio.timeout(30):
                while not await running.pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE tasks%'"
                ):
                    await asyncio.sleep(0.01)
            # ...and waiting for the first row closes the cycle.
            await asyncio.wait_for(other.execute(lock, first), timeout=30)
            await transaction.commit()
        rows = await asyncio.wait_for(committing, timeout=30)
        states = await running.pool.fetch("SELECT status, attempts FROM tasks")
    assert all(r is not None and len(r) == 1 for r in rows)
    assert sorted((r["status"], r["attempts"]) for r in states) == [("succeeded", 1)] * 2
    assert "deadlocked; again" in caplog.text
