"""GroupCommit: concurrent submits share batches, results keep their order, errors reach all."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from statefleet.engine.runtime.groupcommit import GroupCommit


class Recorder:
    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate

    async def flush(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        else:
            await asyncio.sleep(0)
        return [item * 10 for item in items]


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
    await asyncio.sleep(0.01)  # the first batch is now being written (held by the gate)
    rest = [asyncio.create_task(commit.submit(n)) for n in range(2, 12)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [n * 10 for n in range(2, 12)]
    assert recorder.batches == [[1], list(range(2, 12))]


async def test_max_batch_splits_a_crowd() -> None:
    gate = asyncio.Event()
    recorder = Recorder(gate)
    commit = GroupCommit(recorder.flush, max_batch=4, max_in_flight=1)
    blocker = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0.01)
    crowd = [asyncio.create_task(commit.submit(n)) for n in range(1, 11)]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(blocker, *crowd)
    assert recorder.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


async def test_a_failed_batch_fails_every_caller_in_it_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        await asyncio.sleep(0.01)
        if 2 in items:
            raise ConnectionError("database went away")
        return list(items)

    commit = GroupCommit(flush, max_in_flight=1)
    first = asyncio.create_task(commit.submit(1))
    await asyncio.sleep(0)
    doomed = [asyncio.create_task(commit.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    assert await first == 1
    for task in doomed:
        with pytest.raises(ConnectionError):
            await task
    assert await commit.submit(4) == 4
    assert calls == [[1], [2, 3], [4]]


async def test_a_cancelled_caller_does_not_cancel_its_batch() -> None:
    gate = asyncio.Event()
    recorder = Recorder(gate)
    commit = GroupCommit(recorder.flush)
    leaving = asyncio.create_task(commit.submit(1))
    staying = asyncio.create_task(commit.submit(2))
    await asyncio.sleep(0.01)
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
