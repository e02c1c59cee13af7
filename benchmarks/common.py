"""Pieces the database benchmarks share: the toggle workflow, instances, printing."""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg

from benchmarks import machine_info, results_io
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.handlers import HandlerFactory
from statefleet.engine.ports import Queue, QueueJob
from statefleet.engine.runtime import (
    Engine,
    EngineSettings,
    InstanceRuntime,
    LocalBackend,
    Publisher,
    StartRequest,
)
from statefleet.engine.runtime.definitions import deploy_definition

ROOT = pathlib.Path(__file__).resolve().parent.parent
TENANT = "bench"
#: Two states and one event flipping between them: an instance never finishes.
TOGGLE = json.loads((pathlib.Path(__file__).parent / "specs" / "toggle.json").read_text())
HELLO = json.loads((ROOT / "tests" / "fixtures" / "hello-workflow.json").read_text())


#: How often the wait for a run's end polls at most and at least (seconds).
POLL_MIN_S = 0.02
POLL_MAX_S = 0.5


async def wait_done(
    pool: asyncpg.Pool[Any], instances: int, began: float, timeout: float = 600.0
) -> float:
    """Waits until ``instances`` instances are done; returns the seconds since ``began``
    (a ``time.perf_counter()``).

    Each look is a count on the database under measurement, so it looks often only near
    the end: after a quarter of the time the instances left need at the rate so far,
    between 20 ms and 0.5 s. The end is still seen within 20 ms, and a 10,000-instance
    run makes about 20 counts instead of 200 (which took about 2% of Postgres's time).

    Raises:
        RuntimeError: not all of them were done within ``timeout`` seconds.
    """
    while True:
        done = await pool.fetchval("SELECT count(*) FROM workflow_instances WHERE status = 'done'")
        elapsed = time.perf_counter() - began
        if done >= instances:
            return elapsed
        if elapsed > timeout:
            raise RuntimeError(f"only {done} of {instances} done after {timeout:g} s")
        left = (instances - done) * elapsed / done if done else POLL_MAX_S
        await asyncio.sleep(min(POLL_MAX_S, max(POLL_MIN_S, left / 4)))


class CountingQueue(MemoryQueue):
    """A memory queue that counts the jobs handed to the broker (per queue)."""

    def __init__(self) -> None:
        super().__init__()
        self.enqueued: dict[str, int] = {}

    async def enqueue(self, job: QueueJob, *, delay_ms: int = 0) -> None:
        self.enqueued[job.queue] = self.enqueued.get(job.queue, 0) + 1
        await super().enqueue(job, delay_ms=delay_ms)

    async def enqueue_many(self, jobs: Iterable[QueueJob]) -> None:
        jobs = list(jobs)
        for job in jobs:
            self.enqueued[job.queue] = self.enqueued.get(job.queue, 0) + 1
        await super().enqueue_many(jobs)


def local_engine(
    pool: asyncpg.Pool[Any],
    queue: Queue,
    handlers: HandlerFactory = "statefleet.registries:hello_noop",
    settings: EngineSettings | None = None,
) -> Engine:
    """The engine loop over the in-process backend (start it, then ``close`` it)."""
    settings = settings or EngineSettings()
    return Engine(pool, queue, LocalBackend(pool, handlers, settings), settings)


async def toggle_instances(pool: asyncpg.Pool[Any], count: int) -> list[uuid.UUID]:
    """Creates ``count`` running toggle instances without queueing any event."""
    runtime = InstanceRuntime(pool, Publisher(pool, MemoryQueue()))
    async with pool.acquire() as connection:
        definition = await deploy_definition(connection, TENANT, TOGGLE)
    ids: list[uuid.UUID] = []
    for offset in range(0, count, 1_000):
        chunk = [StartRequest()] * min(1_000, count - offset)
        results = await runtime.start_many(TENANT, definition.id, chunk, start_event=None)
        ids.extend(r.instance_id for r in results)
    return ids


def finish(
    name: str,
    info: dict[str, Any],
    parameters: dict[str, Any],
    figures: dict[str, float],
    lines: list[str],
    out: pathlib.Path | None,
) -> dict[str, Any]:
    """Prints the banner and table, writes the JSON result, returns it."""
    print(machine_info.banner(info))
    for line in lines:
        print(line)
    result: dict[str, Any] = {
        "benchmark": name,
        "machine": info,
        "parameters": parameters,
        "figures": figures,
    }
    path = results_io.write(name, result, out)
    result["path"] = str(path)
    print(f"wrote {results_io.shown(path)}")
    return result
