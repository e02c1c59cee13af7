"""Handler factories for the shared driver suite that work in any process.

The suite runs each test through the in-process backend and through Ray actors. A
handler running in a Ray actor cannot append to a list in the test process, so these
handlers record what they saw as lines in a file the test reads (``Journal``); each
factory is a module-level function, pickled by value into the actors (see
``ray_support``), with its settings as arguments.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from typing import Any

from statefleet.engine.handlers import HandlerRegistry, SmtpSettings, TaskContext


class Journal:
    """A file of JSON lines, appended by handlers anywhere on this machine."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def write(self, **entry: Any) -> None:
        with self.path.open("a") as stream:
            stream.write(json.dumps(entry) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


def hello_registry(smtp: SmtpSettings) -> HandlerRegistry:
    """The built-ins, EMAIL to ``smtp``; no users' entry points."""
    return HandlerRegistry.with_builtins(smtp, entry_points_group=None)


def no_handlers() -> HandlerRegistry:
    return HandlerRegistry()


def flaky_registry(journal: pathlib.Path) -> HandlerRegistry:
    """``FLAKY`` always fails, journaling each attempt and when it ran (monotonic clock)."""

    async def flaky(task: TaskContext) -> Any:
        Journal(journal).write(attempt=task.attempt, at=time.monotonic())
        raise RuntimeError(f"boom on attempt {task.attempt}")

    registry = HandlerRegistry()
    registry.register("FLAKY", flaky)
    return registry


def slow_quick_registry(journal: pathlib.Path) -> HandlerRegistry:
    """``SLOW`` returns at once, journaling its attempt."""

    async def quick(task: TaskContext) -> Any:
        Journal(journal).write(attempt=task.attempt)
        return {"attempt": task.attempt}

    registry = HandlerRegistry()
    registry.register("SLOW", quick)
    return registry


def slow_first_attempt_registry(journal: pathlib.Path) -> HandlerRegistry:
    """``SLOW`` journals each attempt as it begins; the first then takes 2.5 s (a test
    kills its pool meanwhile), the others return at once."""

    async def slow(task: TaskContext) -> Any:
        Journal(journal).write(attempt=task.attempt)
        if task.attempt == 1:
            await asyncio.sleep(2.5)
        return {"attempt": task.attempt}

    registry = HandlerRegistry()
    registry.register("SLOW", slow)
    return registry


def email_journal_registry(journal: pathlib.Path) -> HandlerRegistry:
    """``EMAIL`` that journals the instance and keeps some work in flight for a while."""

    async def email(task: TaskContext) -> Any:
        Journal(journal).write(instance=task.instance_id)
        await asyncio.sleep(0.01)
        return {"accepted": [task.input["to"]]}

    registry = HandlerRegistry()
    registry.register("EMAIL", email)
    return registry


def gated_email_registry(
    journal: pathlib.Path, gate: pathlib.Path, open_first: int
) -> HandlerRegistry:
    """``EMAIL`` that journals the instance, lets its first ``open_first`` tasks through and
    holds the others until ``gate`` (a file) exists: a test can stop the world with work
    provably in flight. Built once per executor, so the count is that executor's."""
    passed = 0

    async def email(task: TaskContext) -> Any:
        nonlocal passed
        Journal(journal).write(instance=task.instance_id)
        if passed < open_first:
            passed += 1
        else:
            while not gate.exists():  # polls a condition; the test opens it
                await asyncio.sleep(0.01)
        return {"accepted": [task.input["to"]]}

    registry = HandlerRegistry()
    registry.register("EMAIL", email)
    return registry


def interval_registry(journal: pathlib.Path) -> HandlerRegistry:
    """``WORK`` holds for 30 ms, journaling its task's key input and when it began and
    ended (monotonic clock), so a test can count the attempts that overlapped."""

    async def work(task: TaskContext) -> Any:
        began = time.monotonic()
        await asyncio.sleep(0.03)
        Journal(journal).write(key=task.input.get("key"), began=began, ended=time.monotonic())
        return {"ok": True}

    registry = HandlerRegistry()
    registry.register("WORK", work)
    return registry


__all__ = [
    "Journal",
    "email_journal_registry",
    "flaky_registry",
    "gated_email_registry",
    "hello_registry",
    "interval_registry",
    "no_handlers",
    "slow_quick_registry",
]
