"""One engine under any of the three queue drivers, for the shared end-to-end suite.

``open_engine(driver, dsn, registry, ...)`` yields a :class:`DriverEngine`: a pool, the
driver, a started :class:`Engine` and the service, a front door of its own as an API
process is (:func:`front_door`), so that the work it starts goes through the driver.
Under ``cloudtasks`` the engine is reached only through the worker app's
``/internal/queues/*`` routes served by uvicorn, fed by the emulator
(``cloudtasks_support``); under ``bullmq`` it runs on a real Redis with a fresh key
prefix per engine; under ``memory`` on a private backend.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from cloudtasks_support import cloudtasks_engine
from runtime_support import FAST, BackendKind, engine_on, running_engine

from statefleet.drivers.bullmq import BullMQQueue
from statefleet.engine.handlers import HandlerFactory, HandlerRegistry
from statefleet.engine.ports import Queue
from statefleet.engine.runtime import Engine, EngineSettings, InstanceRuntime, WorkflowService
from statefleet.engine.store.db import create_pool

DriverKind = Literal["memory", "bullmq", "cloudtasks"]
DRIVERS: tuple[DriverKind, ...] = ("memory", "bullmq", "cloudtasks")


@dataclass
class DriverEngine:
    driver: DriverKind
    pool: asyncpg.Pool[Any]
    queue: Queue
    engine: Engine
    service: WorkflowService


@dataclass(frozen=True)
class DriverTarget:
    """Where a driver's broker lives: a Redis URL for ``bullmq``, an emulator for ``cloudtasks``."""

    driver: DriverKind
    redis_url: str | None = None
    emulator_host: str | None = None
    #: Where the shards and pools run: in the test's process, or in Ray actors.
    backend: BackendKind = "local"


def front_door(pool: asyncpg.Pool[Any], engine: Engine) -> WorkflowService:
    """The service as an API process of its own has it: it publishes through the
    engine's driver and runs no tasks itself. (The engine's own ``runtime`` hands the
    tasks its starts create straight to its pools, so a hello started there would take
    no broker job and the suite would not exercise the driver.)"""
    return WorkflowService(pool, InstanceRuntime(pool, engine.publisher))


def bullmq_prefix() -> str:
    return f"sf-e2e-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def bullmq_engine(
    dsn: str,
    registry: HandlerRegistry | HandlerFactory,
    redis_url: str,
    *,
    prefix: str | None = None,
    settings: EngineSettings = FAST,
    backend: BackendKind = "local",
) -> AsyncIterator[DriverEngine]:
    """Pool, BullMQ driver (50 ms retry backoff), started engine; torn down in order."""
    pool = await create_pool(dsn, max_size=8)
    queue = BullMQQueue(redis_url, prefix=prefix or bullmq_prefix(), min_backoff_ms=50)
    try:
        async with engine_on(
            pool, queue, registry, settings=settings, backend=backend, dsn=dsn
        ) as engine:
            yield DriverEngine("bullmq", pool, queue, engine, front_door(pool, engine))
    finally:
        await queue.close()
        await pool.close()


@asynccontextmanager
async def open_engine(
    target: DriverTarget, dsn: str, registry: HandlerRegistry | HandlerFactory
) -> AsyncIterator[DriverEngine]:
    """A started engine on ``target``'s driver and backend."""
    if target.driver == "memory":
        async with running_engine(dsn, registry, hosts=target.backend) as memory:
            service = front_door(memory.pool, memory.engine)
            yield DriverEngine("memory", memory.pool, memory.queue, memory.engine, service)
    elif target.driver == "bullmq":
        assert target.redis_url is not None
        async with bullmq_engine(dsn, registry, target.redis_url, backend=target.backend) as engine:
            yield engine
    else:
        assert target.emulator_host is not None
        async with cloudtasks_engine(
            dsn, registry, target.emulator_host, backend=target.backend
        ) as cloud:
            service = front_door(cloud.pool, cloud.engine)
            yield DriverEngine("cloudtasks", cloud.pool, cloud.queue, cloud.engine, service)
