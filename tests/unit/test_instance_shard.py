"""The instance shard without Postgres or Ray: a fake runtime, a fake clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from statefleet.engine.ports.queue import EventJobData
from statefleet.engine.runtime.checkpoints import Checkpoint
from statefleet.engine.runtime.instances import ApplyOutcome
from statefleet.engine.runtime.outbox import OutboxRow
from statefleet.engine.runtime.shard import InstanceShard, ShardSettings

TENANT = "acme"


class FakeRuntime:
    """Applies events like InstanceRuntime would, as far as the shard can tell."""

    def __init__(self, shard: InstanceShard, delay: float = 0.001) -> None:
        self.shard = shard
        self.delay = delay
        self.loads = 0
        self.in_flight: set[str] = set()
        self.applied: list[tuple[str, str]] = []
        self.fail_next = False
        #: Definitions whose machines are big (their instances are committed alone).
        self.long_running: set[uuid.UUID] = set()
        self.commits: list[set[str]] = []

    def steps_in_thread(self, definition_id: uuid.UUID) -> bool:
        return definition_id in self.long_running

    async def apply_collecting(
        self, events: Sequence[EventJobData], claims: object = None
    ) -> tuple[list[ApplyOutcome], list[OutboxRow]]:
        instances = {e.instance_id for e in events}
        assert not instances & self.in_flight, "an instance was in two commits at once"
        self.commits.append(instances)
        self.in_flight |= instances
        try:
            await asyncio.sleep(self.delay)
            if self.fail_next:
                self.fail_next = False
                raise ConnectionError("database went away")
            rows = []
            for instance_id in instances:
                key = (TENANT, uuid.UUID(instance_id))
                checkpoint = self.shard.get(key)
                if checkpoint is None:
                    self.loads += 1
                    checkpoint = Checkpoint(TENANT, key[1], uuid.uuid4(), "running", {}, 0, None)
                self.shard.put(
                    Checkpoint(TENANT, key[1], checkpoint.definition_id, "running", {}, 1, None)
                )
                rows.append(row_for(key[1]))
            self.applied.extend((e.instance_id, e.event_id) for e in events)
            outcomes = [ApplyOutcome(e.event_id, e.instance_id, "applied") for e in events]
            return outcomes, rows
        finally:
            self.in_flight -= instances


def row_for(instance_id: uuid.UUID) -> OutboxRow:
    return OutboxRow(TENANT, uuid.uuid4(), instance_id, "q", "event", {}, str(uuid.uuid4()))


def event(instance_id: uuid.UUID, n: int) -> EventJobData:
    return EventJobData(TENANT, str(instance_id), f"{instance_id}-{n}", "PING", {})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(settings: ShardSettings, clock: Any = None) -> tuple[InstanceShard, FakeRuntime]:
    runtimes: list[FakeRuntime] = []

    def factory(shard: InstanceShard) -> Any:
        runtimes.append(FakeRuntime(shard))
        return runtimes[-1]

    shard = InstanceShard(factory, settings, clock=clock or Clock())
    return shard, runtimes[0]


async def test_events_of_one_instance_apply_in_order_one_commit_at_a_time() -> None:
    shard, runtime = make(ShardSettings(max_batch=7, commit_concurrency=3))
    ids = [uuid.uuid4() for _ in range(20)]
    calls = [shard.submit([event(i, n) for i in ids]) for n in range(10)]
    results = await asyncio.gather(*calls)
    assert all(o.outcome == "applied" for r in results for o in r.outcomes)
    for instance_id in ids:
        seen = [e for i, e in runtime.applied if i == str(instance_id)]
        assert seen == [f"{instance_id}-{n}" for n in range(10)]
    await shard.close()


async def test_every_outbox_row_is_returned_to_exactly_one_caller() -> None:
    shard, _runtime = make(ShardSettings(max_batch=50))
    ids = [uuid.uuid4() for _ in range(30)]
    results = await asyncio.gather(*(shard.submit([event(i, n) for i in ids]) for n in range(3)))
    rows = [r.id for result in results for r in result.outbox]
    assert len(rows) == len(set(rows))
    assert shard.commits >= 1
    await shard.close()


async def test_resident_checkpoints_stay_within_max_resident() -> None:
    shard, _runtime = make(ShardSettings(max_resident=10, max_batch=64, commit_concurrency=2))
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, shard.resident_count())
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    ids = [uuid.uuid4() for _ in range(200)]
    await asyncio.gather(*(shard.submit([event(i, 0)]) for i in ids))
    watcher.cancel()
    assert shard.resident_count() <= 10
    assert max(peak, shard.peak_resident) <= 10
    await shard.close()


async def test_a_resident_instance_is_not_loaded_again() -> None:
    shard, runtime = make(ShardSettings())
    instance_id = uuid.uuid4()
    for n in range(5):
        await shard.submit([event(instance_id, n)])
    assert runtime.loads == 1
    assert shard.resident_count() == 1
    await shard.close()


async def test_idle_instances_are_passivated() -> None:
    clock = Clock()
    shard, _runtime = make(ShardSettings(idle_ms=1000), clock)
    await shard.submit([event(uuid.uuid4(), 0), event(uuid.uuid4(), 0)])
    assert shard.resident_count() == 2
    clock.now += 0.5
    assert shard.passivate_idle() == 0
    clock.now += 0.6
    assert shard.passivate_idle() == 2
    assert shard.resident_count() == 0
    assert shard.actor_count() == 0
    await shard.close()


async def test_a_failed_commit_fails_its_callers_and_forgets_their_instances() -> None:
    shard, runtime = make(ShardSettings())
    instance_id = uuid.uuid4()
    await shard.submit([event(instance_id, 0)])
    runtime.fail_next = True
    with pytest.raises(ConnectionError):
        await shard.submit([event(instance_id, 1)])
    assert shard.resident_count() == 0
    result = await shard.submit([event(instance_id, 1)])
    assert [o.outcome for o in result.outcomes] == ["applied"]
    assert runtime.loads == 2
    await shard.close()


async def test_a_malformed_instance_id_is_unknown() -> None:
    shard, _ = make(ShardSettings())
    bad = EventJobData(TENANT, "not-a-uuid", "e1", "PING", {})
    result = await shard.submit([bad])
    assert [o.outcome for o in result.outcomes] == ["unknown_instance"]
    await shard.close()


async def test_an_instance_of_a_big_machine_is_committed_alone() -> None:
    """Its step may run up to its time budget; nobody else's commit waits for it."""
    shard, runtime = make(ShardSettings(max_batch=50, commit_concurrency=2))
    heavy, *light = [uuid.uuid4() for _ in range(6)]
    await shard.submit([event(heavy, 0), *(event(i, 0) for i in light)])
    checkpoint = shard.get((TENANT, heavy))
    assert checkpoint is not None
    assert any(len(c) > 1 for c in runtime.commits)  # not yet known: committed together
    runtime.long_running.add(checkpoint.definition_id)
    runtime.commits.clear()
    await shard.submit(
        [e for n in (1, 2) for e in (event(heavy, n), *(event(i, n) for i in light))]
    )
    with_heavy = [c for c in runtime.commits if str(heavy) in c]
    assert with_heavy
    assert all(c == {str(heavy)} for c in with_heavy)
    assert {i for c in runtime.commits for i in c} == {str(i) for i in (heavy, *light)}
    await shard.close()
