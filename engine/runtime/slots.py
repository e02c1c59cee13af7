"""The slots of one task type in a pool: interactive attempts are served first.

A pool runs at most N attempts of a type at once (``ExecutorSettings``). Jobs the
admitter hands over (a batch's tasks, limited tasks: ``TaskJobData.admitted``) wait
behind every interactive job that asks meanwhile, so a single start's e-mail does not
queue behind the few hundred bulk attempts a pool holds (docs/scheduling.md).

Hand-written because ``asyncio.Semaphore`` has one FIFO of waiters and no notion of
class; this is that semaphore with two FIFOs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable

__all__ = ["Slots"]


class Slots:
    def __init__(self, size: int) -> None:
        self.free = max(1, size)
        #: Waiters, interactive first, then admitted.
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),
            deque(),
        )

    @contextlib.asynccontextmanager
    async def held(self, *, admitted: bool) -> AsyncIterator[Callable[[], None]]:
        """One slot for the duration of the block, or until the block calls what it yields.

        The early release lets a task attempt free its slot once its handler is done,
        while its outcome is still being committed (``TaskRunner.run(handled=...)``).
        Releasing twice frees the slot once.
        """
        await self._acquire(admitted)
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._release()

        try:
            yield release
        finally:
            release()

    async def _acquire(self, admitted: bool) -> None:
        if self.free > 0 and not any(self._waiting):
            self.free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting[1 if admitted else 0]
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over as we were cancelled
            else:
                queue.remove(waiter)
            raise

    def _release(self) -> None:
        for queue in self._waiting:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the slot passes straight to the waiter
                    return
        self.free += 1
