"""GroupCommit: concurrent submits share batches, results keep their order, errors reach all."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from statefleet.engine.runtime.groupcommit import GroupCommit


class Recorder:
    """A flush that records its batches, says when one is being written (``writing``) and,
    given a ``gate``, holds every batch until the test opens it: tests synchronise on
    these events, never on time."""

    def __init__(self, gate: asyncio.Event | None = None, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.fail_on = fail_on
        self.writing = asyncio.Event()

    async def flush(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.writing.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_on in items:
            raise ConnectionError("database went away")
        return [item * 10 for item in items]


async def submitted(commit: GroupCommit[int, int], items: range) -> list[asyncio.Task[int]]:
    """Submits each item from its own task; returns once every item has joined the queue.

    ``submit`` queues its item before its first await, so once the last task has
    started (the event is set just before that synchronous step) every item is queued.
    """
    started = 0
    all_started = asyncio.Event()

    async def one(item: int) -> int:
        nonlocal started
        started += 1
        if started == len(items):
            all_started.set()
        return await commit.submit(item)

    tasks = [asyncio.create_task(one(item)) for item in items]
    await all_started.wait()
    return tasks


async def test_a_lone_submit_is_written_at_once_as_a_batch_of_one() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.flush)
    assert await commit.submit(7) == 70
    assert recorder.batches == [[7]]


async def test_submits_arriving_during_a_write_form_the_next_batch() -> None:
    gate = asyncio.Event()
    recorder = Recorder(gate)
    commit = GroupCommit(recorder.flush, max_in_flight=1)
    first = asyncio.create_task(commit.submit(1))
    await recorder.writing.wait()  # the first batch is being written (held by the gate)
    rest = await submitted(commit, range(2, 12))
    gate.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [n * 10 for n in range(2, 12)]
    assert recorder.batches == [[1], list(range(2, 12))]


async def test_max_batch_splits_a_crowd() -> None:
    gate = asyncio.Event()
    recorder = Recorder(gate)
    commit = GroupCommit(recorder.flush, max_batch=4, max_in_flight=1)
    blocker = asyncio.create_task(commit.submit(0))
    await recorder.writing.wait()
    crowd = await submitted(commit, range(1, 11))
    gate.set()
    await asyncio.gather(blocker, *crowd)
    assert recorder.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


async def test_a_failed_batch_fails_every_caller_in_it_and_the_next_batch_still_runs() -> None:
    gate = asyncio.Event()
    recorder = Recorder(gate, fail_on=2)
    commit = GroupCommit(recorder.flush, max_in_flight=1)
    first = asyncio.create_task(commit.submit(1))
    await recorder.writing.wait()
    doomed = await submitted(commit, range(2, 4))
    gate.set()
    assert await first == 10
    for task in doomed:
        with pytest.raises(ConnectionError):
            await task
    assert await commit.submit(4) == 40
    assert recorder.batches == [[1], [2, 3], [4]]


async def test_a_cancelled_caller_does_not_cancel_its_batch() -> None:
    gate = asyncio.Event()
    recorder = Recorder(gate)
    commit = GroupCommit(recorder.flush)
    leaving, staying = await submitted(commit, range(1, 3))
    await recorder.writing.wait()
    leaving.cancel()
    gate.set()
    assert await staying == 20
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert recorder.batches == [[1, 2]]


async def test_a_flush_returning_the_wrong_count_is_an_error_for_its_callers() -> None:
    async def short(items: Sequence[int]) -> list[int]:
        return list(items)[:-1]

    commit = GroupCommit(short)
    with pytest.raises(RuntimeError, match="results for"):
        await commit.submit(1)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Recorder().flush, max_batch=0)
