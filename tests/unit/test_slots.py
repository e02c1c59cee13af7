"""A pool's slots of one task type: interactive waiters are served before admitted ones."""

from __future__ import annotations

import asyncio

import pytest

from statefleet.engine.runtime.slots import Slots

pytestmark = pytest.mark.asyncio


async def _take(
    slots: Slots, name: str, admitted: bool, order: list[str], go: asyncio.Event
) -> None:
    async with slots.held(admitted=admitted):
        order.append(name)
        await go.wait()


async def test_a_freed_slot_goes_to_the_interactive_waiter_before_older_admitted_ones() -> None:
    slots = Slots(1)
    order: list[str] = []
    go = asyncio.Event()
    first = asyncio.create_task(_take(slots, "first", True, order, go))
    await asyncio.sleep(0)
    bulk = [asyncio.create_task(_take(slots, f"bulk{i}", True, order, go)) for i in range(3)]
    await asyncio.sleep(0)
    single = asyncio.create_task(_take(slots, "single", False, order, go))
    await asyncio.sleep(0)
    assert order == ["first"]  # one slot: the rest wait
    go.set()
    await asyncio.gather(first, *bulk, single)
    assert order == ["first", "single", "bulk0", "bulk1", "bulk2"]


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    slots = Slots(2)
    go = asyncio.Event()
    order: list[str] = []
    holders = [asyncio.create_task(_take(slots, f"h{i}", False, order, go)) for i in range(2)]
    await asyncio.sleep(0)
    waiting = asyncio.create_task(_take(slots, "gone", True, order, go))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    go.set()
    await asyncio.gather(*holders)
    assert slots.free == 2
    assert order == ["h0", "h1"]


async def test_never_more_than_its_size_at_once() -> None:
    slots = Slots(3)
    inside = peak = 0

    async def one(admitted: bool) -> None:
        nonlocal inside, peak
        async with slots.held(admitted=admitted):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(one(i % 2 == 0) for i in range(40)))
    assert peak == 3
    assert slots.free == 3


async def test_a_slot_released_early_goes_to_a_waiter_and_is_freed_once() -> None:
    slots = Slots(1)
    order: list[str] = []
    go = asyncio.Event()
    finish = asyncio.Event()

    async def early() -> None:
        async with slots.held(admitted=False) as release:
            order.append("early")
            release()
            release()  # a second call frees nothing more
            await finish.wait()
            order.append("early done")

    first = asyncio.create_task(early())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(_take(slots, "waiter", False, order, go))
    await asyncio.sleep(0)
    assert order == ["early", "waiter"]  # in while the first block still runs
    go.set()
    await waiter
    finish.set()
    await first
    assert slots.free == 1
