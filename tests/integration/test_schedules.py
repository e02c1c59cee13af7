"""Schedules fired by the engine's scheduler, on real Postgres (docs/schedules.md).

The clock is injected: a test moves it and calls ``fire_due``, so ticks minutes or days
apart are checked at once. Instances start through the service as the API's do; the
start event is never consumed here (no engine loop), so an instance stays running
until the test cancels it, which is how "the previous instance still runs" is set up.
One test runs two real engine loops on the wall clock, one of them restarted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from runtime_support import FAST, running_engine

from statefleet.drivers.memory import MemoryBackend, MemoryQueue
from statefleet.engine.handlers import HandlerRegistry
from statefleet.engine.runtime import InstanceRuntime, Publisher, WorkflowService
from statefleet.engine.runtime.schedules import (
    CATCH_UP_MAX,
    InvalidSchedule,
    Scheduler,
    ScheduleRequest,
    ScheduleView,
    tick_key,
)
from statefleet.engine.store.db import Pool, create_pool

TENANT = "acme"
#: Waits for a WAKE event forever: an instance of it runs until cancelled.
WAITING: dict[str, Any] = {
    "id": "waiting",
    "initial": "idle",
    "states": {"idle": {"on": {"WAKE": "done"}}, "done": {"type": "final"}},
}
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclasses.dataclass
class Setup:
    pool: Pool
    service: WorkflowService
    scheduler: Scheduler
    clock: Clock

    async def create(self, tenant: str = TENANT, **fields: Any) -> ScheduleView:
        fields.setdefault("definition_key", "waiting")
        return await self.service.schedules.create(tenant, ScheduleRequest(**fields))

    async def started(self, schedule: ScheduleView) -> list[tuple[str, str]]:
        """(start key, status) of the instances the schedule started, by key."""
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT start_idempotency_key, status FROM workflow_instances "
                "WHERE start_idempotency_key LIKE $1 ORDER BY start_idempotency_key",
                f"schedule:{schedule.id}:%",
            )
        return [(r["start_idempotency_key"], r["status"]) for r in rows]

    async def fire(self, at: datetime) -> None:
        self.clock.now = at
        await self.scheduler.fire_due()


async def _setup(pool: Pool, clock: Clock) -> tuple[WorkflowService, Scheduler]:
    service = WorkflowService(pool, InstanceRuntime(pool, Publisher(pool, MemoryQueue())))
    service.schedules.clock = clock
    return service, Scheduler(pool, service, clock=clock)


@pytest_asyncio.fixture
async def setup(database_dsn: str) -> AsyncIterator[Setup]:
    pool = await create_pool(database_dsn, max_size=6)
    try:
        clock = Clock(T0)
        service, scheduler = await _setup(pool, clock)
        await service.deploy(TENANT, WAITING)
        yield Setup(pool, service, scheduler, clock)
    finally:
        await pool.close()


def keys(schedule: ScheduleView, *ticks: datetime) -> list[str]:
    return [tick_key(schedule.id, t) for t in ticks]


def s(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)


async def test_two_schedulers_racing_start_each_tick_exactly_once(
    database_dsn: str, setup: Setup
) -> None:
    """Two schedulers on their own pools claim at the same instants, tick after tick: every
    tick of every schedule starts one instance, and the two reports add up to exactly the
    instances that exist (a tick handled twice would count twice)."""
    other_pool = await create_pool(database_dsn, max_size=6)
    try:
        _, other = await _setup(other_pool, setup.clock)
        schedules = [await setup.create(every_seconds=2, overlap="allow") for _ in range(12)]
        started = 0
        for second in range(1, 21):
            setup.clock.now = T0 + s(second)
            a, b = await asyncio.gather(setup.scheduler.fire_due(), other.fire_due())
            started += a.started + b.started
        for schedule in schedules:
            ticks = [T0 + s(2 * k) for k in range(1, 11)]
            assert [k for k, _ in await setup.started(schedule)] == keys(schedule, *ticks)
        assert started == 12 * 10
        got = await setup.service.schedules.get(TENANT, schedules[0].id)
        assert got.next_run_at == T0 + s(22)
        assert got.last_tick_at == T0 + s(20)
    finally:
        await other_pool.close()


async def test_overlap_skip_drops_ticks_while_the_previous_instance_runs(setup: Setup) -> None:
    schedule = await setup.create(every_seconds=10, overlap="skip")
    assert schedule.next_run_at == T0 + s(10)
    await setup.fire(T0 + s(10))
    await setup.fire(T0 + s(20))  # the first still runs: skipped
    ((first, status),) = await setup.started(schedule)
    assert (first, status) == (keys(schedule, T0 + s(10))[0], "running")
    view = await setup.service.schedules.get(TENANT, schedule.id)
    assert view.skipped_ticks == 1
    assert view.next_run_at == T0 + s(30)
    assert view.last_instance_id is not None
    await setup.service.cancel(TENANT, view.last_instance_id)
    await setup.fire(T0 + s(30))
    assert [k for k, _ in await setup.started(schedule)] == keys(schedule, T0 + s(10), T0 + s(30))


async def test_overlap_allow_starts_every_tick(setup: Setup) -> None:
    schedule = await setup.create(every_seconds=10, overlap="allow")
    for k in (1, 2, 3):
        await setup.fire(T0 + s(10 * k))
    assert await setup.started(schedule) == [
        (key, "running") for key in keys(schedule, T0 + s(10), T0 + s(20), T0 + s(30))
    ]


async def test_overlap_buffer_one_holds_one_tick_until_the_previous_ends(setup: Setup) -> None:
    schedule = await setup.create(every_seconds=10, overlap="bufferOne")
    await setup.fire(T0 + s(10))
    await setup.fire(T0 + s(20))  # buffered
    await setup.fire(T0 + s(30))  # the buffer is full: skipped
    view = await setup.service.schedules.get(TENANT, schedule.id)
    assert (view.buffered_at, view.skipped_ticks) == (T0 + s(20), 1)
    assert len(await setup.started(schedule)) == 1
    assert view.last_instance_id is not None
    await setup.service.cancel(TENANT, view.last_instance_id)
    await setup.fire(T0 + s(31))  # no tick due, but the buffered one may start now
    assert [k for k, _ in await setup.started(schedule)] == keys(schedule, T0 + s(10), T0 + s(20))
    view = await setup.service.schedules.get(TENANT, schedule.id)
    assert view.buffered_at is None
    assert view.last_tick_at == T0 + s(20)
    await setup.fire(T0 + s(40))  # the buffered instance runs: buffered again
    view = await setup.service.schedules.get(TENANT, schedule.id)
    assert view.buffered_at == T0 + s(40)


async def test_pause_starts_nothing_and_resume_skips_what_was_missed(setup: Setup) -> None:
    schedule = await setup.create(every_seconds=10, overlap="allow")
    paused = await setup.service.schedules.pause(TENANT, schedule.id)
    assert paused.paused
    await setup.fire(T0 + s(45))
    assert await setup.started(schedule) == []
    setup.clock.now = T0 + s(55)
    resumed = await setup.service.schedules.resume(TENANT, schedule.id)
    assert not resumed.paused
    assert resumed.next_run_at == T0 + s(60)
    await setup.fire(T0 + s(59))
    assert await setup.started(schedule) == []
    await setup.fire(T0 + s(60))
    assert [k for k, _ in await setup.started(schedule)] == keys(schedule, T0 + s(60))


async def test_catch_up_skip_runs_only_the_latest_missed_tick_once(setup: Setup) -> None:
    schedule = await setup.create(every_seconds=10, overlap="allow", catch_up="skip")
    await setup.fire(T0 + s(95))  # 9 ticks missed: 10 ... 90
    assert [k for k, _ in await setup.started(schedule)] == keys(schedule, T0 + s(90))
    view = await setup.service.schedules.get(TENANT, schedule.id)
    assert view.next_run_at == T0 + s(100)
    await setup.fire(T0 + s(99))
    assert len(await setup.started(schedule)) == 1


async def test_catch_up_all_runs_each_missed_tick_up_to_the_cap(setup: Setup) -> None:
    few = await setup.create(every_seconds=10, overlap="allow", catch_up="all")
    many = await setup.create(every_seconds=1, overlap="allow", catch_up="all")
    await setup.fire(T0 + s(95))
    assert [k for k, _ in await setup.started(few)] == keys(
        few, *(T0 + s(10 * k) for k in range(1, 10))
    )
    # 95 missed ticks of the 1 s schedule, all under the cap; then a longer downtime.
    assert len(await setup.started(many)) == 95
    await setup.fire(T0 + s(95 + 500))
    latest = [T0 + s(t) for t in range(95 + 500 - CATCH_UP_MAX + 1, 95 + 500 + 1)]
    started = [k for k, _ in await setup.started(many)]
    assert len(started) == 95 + CATCH_UP_MAX
    assert sorted(set(started) - set(keys(many, *(T0 + s(t) for t in range(1, 96))))) == sorted(
        keys(many, *latest)
    )


async def test_a_cron_in_a_time_zone_follows_its_daylight_saving_changes(setup: Setup) -> None:
    """02:30 every day in Paris: on 29 March 2026 02:30 does not exist (clocks jump from
    02:00 to 03:00), so it runs at 03:00 CEST; on 25 October 02:30 happens twice and it
    runs once, at the first (CEST)."""
    setup.clock.now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    schedule = await setup.create(cron="30 2 * * *", timezone="Europe/Paris", overlap="allow")
    spring = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert schedule.next_run_at == spring
    await setup.fire(spring - s(1))
    assert await setup.started(schedule) == []
    await setup.fire(spring)
    view = await setup.service.schedules.get(TENANT, schedule.id)
    assert view.next_run_at == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert [k for k, _ in await setup.started(schedule)] == keys(schedule, spring)
    await setup.service.schedules.delete(TENANT, schedule.id)

    setup.clock.now = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    autumn = await setup.create(cron="30 2 * * *", timezone="Europe/Paris", overlap="allow")
    assert autumn.next_run_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    await setup.fire(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    await setup.fire(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # 02:30 CET: not again
    view = await setup.service.schedules.get(TENANT, autumn.id)
    assert view.next_run_at == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # 02:30 CET
    assert [k for k, _ in await setup.started(autumn)] == keys(
        autumn, datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    )


async def test_a_tick_started_before_a_crash_is_recorded_not_started_again(
    setup: Setup,
) -> None:
    """An engine that died after the start committed and before the schedule advanced:
    the next claim of the same tick finds the instance by its key, and the overlap policy
    does not mistake it for a previous run (the tick is not reported skipped)."""
    schedule = await setup.create(every_seconds=10, overlap="skip")
    (key,) = keys(schedule, T0 + s(10))
    earlier = await setup.service.start(TENANT, "waiting", {}, idempotency_key=key)
    await setup.fire(T0 + s(10))
    view = await setup.service.schedules.get(TENANT, schedule.id)
    assert (view.last_instance_id, view.skipped_ticks) == (earlier.instance_id, 0)
    assert [k for k, _ in await setup.started(schedule)] == [key]


async def test_bad_schedules_name_the_field(setup: Setup) -> None:
    cases = [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"every_seconds": 10, "timezone": "Mars/Olympus"}, "timezone"),
        ({"every_seconds": 10, "definition_key": "nope"}, "definitionKey"),
        ({"every_seconds": 10, "version": 9}, "version"),
        ({"every_seconds": 10, "cron": "* * * * *"}, "cron"),
        ({}, "cron"),
    ]
    for fields, path in cases:
        with pytest.raises(InvalidSchedule) as caught:
            await setup.create(**fields)
        assert caught.value.path == path, fields


async def test_schedules_belong_to_their_tenant(setup: Setup) -> None:
    from statefleet.engine.runtime.schedules import UnknownSchedule

    await setup.service.deploy("globex", WAITING)
    mine = await setup.create(every_seconds=10)
    with pytest.raises(UnknownSchedule):
        await setup.service.schedules.get("globex", mine.id)
    with pytest.raises(UnknownSchedule):
        await setup.service.schedules.pause("globex", mine.id)
    with pytest.raises(UnknownSchedule):
        await setup.service.schedules.delete("globex", mine.id)
    assert (await setup.service.schedules.list("globex")).items == []
    assert [v.id for v in (await setup.service.schedules.list(TENANT)).items] == [mine.id]
    # A tenant without the definition cannot schedule it.
    with pytest.raises(InvalidSchedule):
        await setup.service.schedules.create(
            "initech", ScheduleRequest(definition_key="waiting", every_seconds=10)
        )


async def test_two_engines_fire_a_schedule_every_second_once_per_tick_across_a_restart(
    database_dsn: str,
) -> None:
    """Two real engine loops (one stopped and started again midway) poll every 100 ms on
    the wall clock; the instances of a 1 s schedule have one start key per tick, with no
    tick missing between the first and the last."""
    settings = dataclasses.replace(FAST, schedule_poll_ms=100)
    backend = MemoryBackend()
    async with running_engine(
        database_dsn, HandlerRegistry(), settings=settings, backend=backend
    ) as one:
        await one.service.deploy(TENANT, WAITING)
        schedule = await one.service.schedules.create(
            TENANT, ScheduleRequest(definition_key="waiting", every_seconds=1, overlap="allow")
        )

        async def count() -> int:
            async with one.pool.acquire() as connection:
                n: int = await connection.fetchval(
                    "SELECT count(*) FROM workflow_instances WHERE start_idempotency_key LIKE $1",
                    f"schedule:{schedule.id}:%",
                )
            return n

        async def until(n: int, timeout: float = 30) -> None:
            deadline = time.monotonic() + timeout
            while await count() < n:
                assert time.monotonic() < deadline, f"only {await count()} of {n} ticks"
                await asyncio.sleep(0.05)

        async with running_engine(database_dsn, HandlerRegistry(), settings=settings):
            await until(2)
        async with running_engine(database_dsn, HandlerRegistry(), settings=settings):
            await until(4)
        async with one.pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT start_idempotency_key FROM workflow_instances "
                "WHERE start_idempotency_key LIKE $1",
                f"schedule:{schedule.id}:%",
            )
    ticks = sorted(_tick_of(r["start_idempotency_key"]) for r in rows)
    assert len(ticks) >= 4
    assert len(ticks) == len(set(ticks))
    assert ticks == [ticks[0] + s(k) for k in range(len(ticks))]  # none missing
    assert ticks[0] == schedule.next_run_at  # the first tick was not missed either


def _tick_of(key: str) -> datetime:
    """The tick of a start key ``schedule:<id>:<ISO time>``."""
    _, _, when = key.split(":", 2)
    return datetime.fromisoformat(when.replace("Z", "+00:00"))


async def test_catch_up_skip_still_runs_ticks_that_are_only_a_little_late(setup: Setup) -> None:
    """A poll that comes a few seconds late (a busy machine) is not downtime."""
    schedule = await setup.create(every_seconds=1, overlap="allow", catch_up="skip")
    await setup.fire(T0 + s(3) + timedelta(milliseconds=500))  # ticks 1-3 due, <= 2.5 s late
    assert [k for k, _ in await setup.started(schedule)] == keys(
        schedule, T0 + s(1), T0 + s(2), T0 + s(3)
    )
