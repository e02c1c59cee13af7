"""A pass run over and over in the background: the sweeper's and the scheduler's loop.

:class:`BackgroundLoop` owns the task (``start`` once, ``stop`` cancels and awaits it),
survives a failed pass (logged, tried again after the usual wait) and records
``last_pass``, the monotonic time the last pass ended, failed or not: the engine's
liveness signal. A subclass says what one pass is and how long to sleep after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from typing import ClassVar

__all__ = ["BackgroundLoop"]


class BackgroundLoop(ABC):
    #: The asyncio task's name.
    task_name: ClassVar[str]
    #: The logger and the %-format (with the wait in ms) of a failed pass.
    failure_log: ClassVar[logging.Logger]
    failure_message: ClassVar[str]

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self.last_pass = time.monotonic()

    @abstractmethod
    def _wait_ms(self) -> int:
        """The usual sleep between passes, in ms (always the one after a failed pass)."""

    @abstractmethod
    async def _pass(self, wait: float) -> float:
        """One pass; returns the seconds to sleep after it (``wait`` is the usual)."""

    def start(self) -> None:
        """Runs ``run_forever`` in the background until ``stop``."""
        if self._task is None:
            self._task = asyncio.create_task(self.run_forever(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_forever(self) -> None:
        while True:
            wait = self._wait_ms() / 1000
            try:
                wait = await self._pass(wait)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failure_log.exception(self.failure_message, self._wait_ms())
            self.last_pass = time.monotonic()
            await asyncio.sleep(wait)
