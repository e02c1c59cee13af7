"""Held work and the admitter: priorities, weighted fair share, task limits (issue 18).

Real Postgres and the real engine loop (local backend, memory queue). The fair-share
tests drive single admission passes on an engine that is not started, handing the
taken rows to a recorder instead of shards, so what one pass takes is visible.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

from runtime_support import running_engine, wait_for

from statefleet.engine.handlers import HandlerRegistry, TaskContext
from statefleet.engine.ports.queue import ORCHESTRATOR_QUEUE, TASK_RUNNER_QUEUE, TaskJobData
from statefleet.engine.runtime.admission import AdmissionSettings, Admitter
from statefleet.engine.runtime.outbox import OutboxRow
from statefleet.engine.runtime.tally import Tally
from statefleet.engine.runtime.tenant_scheduling import (
    TenantScheduling,
    set_tenant_scheduling,
)
from statefleet.engine.runtime.tenants import create_tenant

WORK: dict[str, Any] = {
    "id": "work",
    "initial": "working",
    "states": {
        "working": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {"type": "WORK", "name": "work", "completionEvent": "DONE"},
                }
            ],
            "on": {"DONE": "done"},
        },
        "done": {"type": "final"},
    },
}


class Tracker:
    """A WORK handler that counts attempts in flight and records when each started."""

    def __init__(self, hold_s: float = 0.02) -> None:
        self.hold_s = hold_s
        self.running = 0
        self.peak = 0
        self.starts: list[float] = []

    async def __call__(self, task: TaskContext) -> Any:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.starts.append(time.monotonic())
        try:
            await asyncio.sleep(self.hold_s)
        finally:
            self.running -= 1
        return {"ok": True}

    def registry(self) -> HandlerRegistry:
        registry = HandlerRegistry()
        registry.register("WORK", self)
        return registry


async def _tenant(running: Any, name: str, scheduling: TenantScheduling | None = None) -> str:
    async with running.pool.acquire() as connection:
        tenant = (await create_tenant(connection, name)).tenant_id
        if scheduling is not None:
            await set_tenant_scheduling(connection, tenant, scheduling)
    await running.service.deploy(tenant, WORK)
    return tenant


async def _wait_all_done(running: Any, tenant: str, batch_id: uuid.UUID, total: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        progress = await running.service.batch_progress(tenant, batch_id)
        if progress.counts["done"] == total:
            return
        assert progress.counts["failed"] == 0, progress
        assert time.monotonic() < deadline, f"the batch never finished: {progress}"
        await asyncio.sleep(0.05)


async def test_a_batch_is_held_and_admitted_without_the_broker(database_dsn: str) -> None:
    tracker = Tracker(hold_s=0)
    async with running_engine(database_dsn, tracker.registry()) as running:
        tenant = await _tenant(running, "bulk")
        before = {
            q: running.queue.backend.accepted(q) for q in (ORCHESTRATOR_QUEUE, TASK_RUNNER_QUEUE)
        }
        batch = await running.service.start_batch(tenant, "work", [{}] * 40)
        await _wait_all_done(running, tenant, batch.batch_id, 40)
        after = {q: running.queue.backend.accepted(q) for q in before}
        single = await running.service.start(tenant, "work")
        view = await wait_for(running.service, tenant, single.instance_id)
        progress = await running.service.batch_progress(tenant, batch.batch_id)
        async with running.pool.acquire() as connection:
            tasks = await connection.fetch(
                "SELECT held, priority, attempts FROM tasks WHERE tenant_id = $1 ORDER BY held",
                tenant,
            )
    # Neither the starts nor the tasks of the batch went through the queue.
    assert after == before
    assert running.engine.tally.admitted == {"event": 40, "task": 40}
    assert progress.priority == 5
    assert view.status == "done"
    assert view.priority == 10
    # The single start's task was published (not held); the batch's 40 were admitted,
    # each claimed once, by the admitter for the pool that ran it.
    assert Counter((t["held"], t["priority"], t["attempts"]) for t in tasks) == {
        (False, 10, 1): 1,
        (True, 5, 1): 40,
    }


async def _recording_admitter(running: Any, batch: int) -> tuple[Admitter, list[OutboxRow]]:
    taken: list[OutboxRow] = []

    async def record(rows: list[OutboxRow]) -> list[OutboxRow]:
        taken.extend(rows)
        return []

    admitter = Admitter(
        running.pool,
        deliver_events=record,
        run_tasks=None,
        tally=Tally(),
        settings=AdmissionSettings(event_batch=batch),
    )
    return admitter, taken


async def test_one_pass_shares_its_batch_between_tenants_by_weight(database_dsn: str) -> None:
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as running:
        big = await _tenant(running, "big", TenantScheduling(weight=3))
        other = await _tenant(running, "other")
        small = await _tenant(running, "small")
        await running.service.start_batch(big, "work", [{}] * 300)
        await running.service.start_batch(other, "work", [{}] * 300)
        await running.service.start_batch(small, "work", [{}] * 5)
        admitter, taken = await _recording_admitter(running, batch=50)
        assert await admitter.event_pass() > 0
        first = Counter(row.tenant_id for row in taken)
        taken.clear()
        await admitter.event_pass()
        second = Counter(row.tenant_id for row in taken)
    # Shares of 50 by weight 3:1:1 (rounded up): the small tenant's 5 all go at once.
    assert first == {big: 30, other: 10, small: 5}
    # Then only two tenants wait: 3:1.
    assert second == {big: 38, other: 13}


async def test_within_a_tenant_higher_priority_goes_first(database_dsn: str) -> None:
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as running:
        tenant = await _tenant(running, "mixed")
        await running.service.start_batch(tenant, "work", [{}] * 100, priority=2)
        urgent = await running.service.start_batch(tenant, "work", [{}] * 10, priority=8)
        admitter, taken = await _recording_admitter(running, batch=10)
        await admitter.event_pass()
        async with running.pool.acquire() as connection:
            urgent_ids = {
                r["id"]
                for r in await connection.fetch(
                    "SELECT id FROM workflow_instances WHERE tenant_id = $1 AND batch_id = $2",
                    tenant,
                    urgent.batch_id,
                )
            }
    assert {row.instance_id for row in taken} == urgent_ids


async def test_events_a_failed_delivery_left_wait_again(database_dsn: str) -> None:
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as running:
        tenant = await _tenant(running, "unlucky")
        await running.service.start_batch(tenant, "work", [{}] * 5)
        attempts: list[list[OutboxRow]] = []

        async def refuse(rows: list[OutboxRow]) -> list[OutboxRow]:
            attempts.append(rows)
            return rows

        admitter = Admitter(running.pool, deliver_events=refuse, run_tasks=None, tally=Tally())
        assert await admitter.event_pass() == 5
        assert await admitter.event_pass() == 5
        async with running.pool.acquire() as connection:
            waiting = await connection.fetchval(
                "SELECT count(*) FROM outbox WHERE tenant_id = $1 AND held"
                " AND published_at IS NULL",
                tenant,
            )
    assert [len(a) for a in attempts] == [5, 5]
    assert {r.id for r in attempts[0]} == {r.id for r in attempts[1]}
    assert waiting == 5
    assert admitter.tally.admitted == {"event": 0}


async def test_a_concurrency_limit_holds_across_two_engines(database_dsn: str) -> None:
    tracker = Tracker(hold_s=0.03)
    limits = TenantScheduling(task_limits={"WORK": {"concurrency": 3}})  # type: ignore[dict-item]
    async with (
        running_engine(database_dsn, tracker.registry()) as first,
        running_engine(database_dsn, tracker.registry()) as second,
    ):
        tenant = await _tenant(first, "limited", limits)
        batch = await first.service.start_batch(tenant, "work", [{}] * 30)
        # Interactive starts are held too once their task type is limited.
        singles = [await second.service.start(tenant, "work") for _ in range(5)]
        await _wait_all_done(first, tenant, batch.batch_id, 30)
        for single in singles:
            assert (await wait_for(second.service, tenant, single.instance_id)).status == "done"
        throttled = first.engine.tally.throttled.get("WORK", 0) + second.engine.tally.throttled.get(
            "WORK", 0
        )
    assert len(tracker.starts) == 35
    assert tracker.peak == 3  # reached, never exceeded
    assert throttled > 0


async def test_a_rate_limit_spaces_the_starts(database_dsn: str) -> None:
    tracker = Tracker(hold_s=0)
    limits = TenantScheduling(task_limits={"WORK": {"perSecond": 20}})  # type: ignore[dict-item]
    async with running_engine(database_dsn, tracker.registry()) as running:
        tenant = await _tenant(running, "rated", limits)
        batch = await running.service.start_batch(tenant, "work", [{}] * 30)
        await _wait_all_done(running, tenant, batch.batch_id, 30)
    starts = sorted(tracker.starts)
    # 20/s with a burst of 2 (100 ms worth): 30 starts cannot take less than 1.4 s, and
    # no second holds more than 20 + 2 of them.
    assert starts[-1] - starts[0] >= (30 - 2) / 20 - 0.05
    assert max(sum(1 for s in starts if t <= s < t + 1) for t in starts) <= 22


async def test_a_task_claimed_for_a_pool_that_died_is_run_by_the_sweeper(
    database_dsn: str,
) -> None:
    tracker = Tracker(hold_s=0)
    async with running_engine(database_dsn, tracker.registry(), start=False) as running:
        tenant = await _tenant(running, "lost")
        started = await running.service.start(tenant, "work", priority=3)
        admitter, taken = await _recording_admitter(running, batch=10)
        await admitter.event_pass()  # the start event is taken and (pretend) delivered...
        await running.engine._deliver_held(taken)  # ...and applied: the task is held
        async with running.pool.acquire() as connection:
            # Claimed by an admitter for a pool that died before it ran the task.
            claimed = await connection.execute(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1,"
                " lease_owner = 'pool-gone/1', lease_expires_at = now() - interval '1 ms'"
                " WHERE tenant_id = $1 AND held AND status = 'pending'",
                tenant,
            )
        await running.engine.start()
        view = await wait_for(running.service, tenant, started.instance_id)
        async with running.pool.acquire() as connection:
            attempts = await connection.fetchval(
                "SELECT attempts FROM tasks WHERE tenant_id = $1", tenant
            )
    assert claimed == "UPDATE 1"
    assert view.status == "done"
    assert len(tracker.starts) == 1
    assert attempts == 2  # the dead pool's claim counted as an attempt


async def test_claims_whose_hand_over_failed_expire_and_run_again(database_dsn: str) -> None:
    tracker = Tracker(hold_s=0)
    async with running_engine(database_dsn, tracker.registry(), start=False) as running:
        tenant = await _tenant(running, "handover")
        batch = await running.service.start_batch(tenant, "work", [{}] * 3)
        events, taken = await _recording_admitter(running, batch=10)
        await events.event_pass()
        await running.engine._deliver_held(taken)  # three tasks held
        handed: list[TaskJobData] = []

        async def pool_gone(index: int, jobs: list[TaskJobData]) -> list[int]:
            handed.extend(jobs)
            raise RuntimeError("the pool's actor died")

        admitter = Admitter(
            running.pool,
            deliver_events=events.deliver_events,
            run_tasks=pool_gone,
            pick_pool=lambda: (0, "pool-lost/1"),
            tally=Tally(),
        )
        assert await admitter.task_pass() == 3
        async with running.pool.acquire() as connection:
            leases = await connection.fetch(
                "SELECT status, lease_owner, lease_expires_at < now() AS expired FROM tasks"
                " WHERE tenant_id = $1",
                tenant,
            )
        await running.engine.start()
        await _wait_all_done(running, tenant, batch.batch_id, 3)
    assert {j.claim["lease_owner"] for j in handed if j.claim} == {"pool-lost/1"}
    assert [tuple(r.values()) for r in leases] == [("running", "pool-lost/1", True)] * 3
    assert len(tracker.starts) == 3


async def test_a_spec_limit_per_key_runs_one_attempt_per_customer_at_a_time(
    database_dsn: str,
) -> None:
    per_customer: dict[str, int] = {}
    peaks: dict[str, int] = {}
    overall = Tracker(hold_s=0.03)

    async def work(task: TaskContext) -> Any:
        customer = task.input["customer"]
        per_customer[customer] = per_customer.get(customer, 0) + 1
        peaks[customer] = max(peaks.get(customer, 0), per_customer[customer])
        try:
            return await overall(task)
        finally:
            per_customer[customer] -= 1

    registry = HandlerRegistry()
    registry.register("WORK", work)
    spec = {
        **WORK,
        "id": "keyed",
        "context": {"customer": ""},
        "states": {
            **WORK["states"],
            "working": {
                "entry": [
                    {
                        "type": "createTask",
                        "task": {
                            "type": "WORK",
                            "name": "work",
                            "completionEvent": "DONE",
                            "input": {"customer": {"$expr": "context.customer"}},
                            "limits": {"concurrency": 1, "key": "input.customer"},
                        },
                    }
                ],
                "on": {"DONE": "done"},
            },
        },
    }
    async with running_engine(database_dsn, registry) as running:
        tenant = await _tenant(running, "keyed")
        await running.service.deploy(tenant, spec)
        inputs = [{"customer": c} for c in ("ann", "bob", "cid")] * 6
        # Interactive starts: a spec limit holds their tasks all the same.
        started = [await running.service.start(tenant, "keyed", i) for i in inputs]
        for one in started:
            assert (await wait_for(running.service, tenant, one.instance_id)).status == "done"
        async with running.pool.acquire() as connection:
            keys = await connection.fetch(
                "SELECT DISTINCT limit_key, limit_concurrency FROM tasks WHERE tenant_id = $1",
                tenant,
            )
    assert {(k["limit_key"], k["limit_concurrency"]) for k in keys} == {
        ("WORK:ann", 1),
        ("WORK:bob", 1),
        ("WORK:cid", 1),
    }
    assert peaks == {"ann": 1, "bob": 1, "cid": 1}
    assert overall.peak > 1  # the customers' attempts did overlap each other


async def test_a_tenant_wide_limit_counts_every_task_type_together(database_dsn: str) -> None:
    tracker = Tracker(hold_s=0.03)
    registry = tracker.registry()
    registry.register("OTHER", tracker)
    other = {
        **WORK,
        "id": "other",
        "states": {
            **WORK["states"],
            "working": {
                "entry": [
                    {
                        "type": "createTask",
                        "task": {"type": "OTHER", "name": "other", "completionEvent": "DONE"},
                    }
                ],
                "on": {"DONE": "done"},
            },
        },
    }
    limits = TenantScheduling(task_limits={"*": {"concurrency": 2}})  # type: ignore[dict-item]
    async with running_engine(database_dsn, registry) as running:
        tenant = await _tenant(running, "wide", limits)
        await running.service.deploy(tenant, other)
        work = await running.service.start_batch(tenant, "work", [{}] * 12)
        others = await running.service.start_batch(tenant, "other", [{}] * 12)
        await _wait_all_done(running, tenant, work.batch_id, 12)
        await _wait_all_done(running, tenant, others.batch_id, 12)
    assert len(tracker.starts) == 24
    assert tracker.peak == 2


async def test_tasks_waiting_on_a_limit_show_as_throttled_in_metrics(database_dsn: str) -> None:
    from statefleet.api.metrics import ApiMetrics

    release = asyncio.Event()
    started = asyncio.Event()

    async def blocking(task: TaskContext) -> Any:
        started.set()
        await release.wait()
        return {"ok": True}

    registry = HandlerRegistry()
    registry.register("WORK", blocking)
    limits = TenantScheduling(task_limits={"WORK": {"concurrency": 1}})  # type: ignore[dict-item]
    async with running_engine(database_dsn, registry) as running:
        tenant = await _tenant(running, "throttled", limits)
        batch = await running.service.start_batch(tenant, "work", [{}] * 3)
        await asyncio.wait_for(started.wait(), 30)
        metrics = ApiMetrics(running.engine.tally)
        deadline = time.monotonic() + 30
        while True:
            text = (await metrics.render(running.pool)).decode()
            if 'statefleet_tasks_throttled{type="WORK"} 2.0' in text:
                break
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.05)
        deferred = running.engine.tally.throttled.get("WORK", 0)
        release.set()
        await _wait_all_done(running, tenant, batch.batch_id, 3)
        after = (await metrics.render(running.pool)).decode()
    assert 'statefleet_held{kind="task"} 0.0' in after
    assert "statefleet_tasks_throttled{" not in after
    assert deferred > 0
    assert "statefleet_admission_deferred_total" in after


class _LaneRecorder(Admitter):
    """Records which lane (its asyncio task) ran each pass of held events."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lanes: list[str] = []
        self.idle_passes = asyncio.Event()

    async def event_pass(self) -> int:
        task = asyncio.current_task()
        assert task is not None
        self.lanes.append(task.get_name())
        if len(self.lanes) == 6:
            self.idle_passes.set()
        return await super().event_pass()


async def test_an_idle_admitter_looks_with_one_lane_and_work_brings_the_others(
    database_dsn: str,
) -> None:
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as running:
        tenant = await _tenant(running, "lanes")
        taken: list[OutboxRow] = []
        all_taken = asyncio.Event()

        async def record(rows: list[OutboxRow]) -> list[OutboxRow]:
            taken.extend(rows)
            if len(taken) == 12:
                all_taken.set()
            return []

        settings = AdmissionSettings(poll_ms=10, lanes=4, event_batch=1)
        admitter = _LaneRecorder(
            running.pool, deliver_events=record, run_tasks=None, tally=Tally(), settings=settings
        )
        admitter.start()
        try:
            await asyncio.wait_for(admitter.idle_passes.wait(), 10)
            idle = set(admitter.lanes)
            admitter.lanes.clear()
            # Twelve held starts, one a pass: the first pass that finds one brings the rest.
            await running.service.start_batch(tenant, "work", [{}] * 12, priority=1)
            await asyncio.wait_for(all_taken.wait(), 10)
            busy = set(admitter.lanes)
        finally:
            await admitter.stop()
    assert idle == {"statefleet-admit-events-0"}  # six passes of an idle engine, one lane
    assert len(busy) >= 2
