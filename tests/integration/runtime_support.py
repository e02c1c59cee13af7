"""Shared pieces for runtime tests: an engine on a real database and a real SMTP server."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any, Literal

import asyncpg
from aiosmtpd.controller import Controller

from statefleet.drivers.memory import MemoryBackend, MemoryQueue
from statefleet.engine.handlers import HandlerFactory, HandlerRegistry, SmtpSettings
from statefleet.engine.ports import Queue
from statefleet.engine.runtime import (
    Engine,
    EngineSettings,
    InstanceRuntime,
    InstanceView,
    LocalBackend,
    WorkflowService,
)
from statefleet.engine.store.db import create_pool

FAST = EngineSettings(
    shards=2,
    pools=1,
    event_batch_wait_ms=2,
    task_batch_wait_ms=2,
    sweep_interval_ms=100,
    sweep_grace_ms=200,
    # A job a broker lost (e.g. across a Redis restart) comes back well within the
    # tests' wait limits, yet a batch queued for a few seconds is not re-sent.
    sweep_event_grace_ms=5_000,
    task_default_lease_ms=30_000,
    task_lease_margin_ms=200,
    db_pool_size=3,
)


def handlers_of(registry: HandlerRegistry | HandlerFactory) -> HandlerFactory:
    """A factory for ``registry``: tests build registries of closures, in this process."""
    if isinstance(registry, HandlerRegistry):
        return lambda: registry
    return registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Inbox:
    """Messages a real SMTP server (aiosmtpd) received."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, SmtpSettings]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, SmtpSettings(host="127.0.0.1", port=port, sender="engine@example.com")
    finally:
        controller.stop()


@dataclass
class Running:
    """A started engine and what the tests talk to it with."""

    pool: asyncpg.Pool[Any]
    queue: Queue
    engine: Engine
    service: WorkflowService


BackendKind = Literal["local", "ray"]


@asynccontextmanager
async def engine_on(
    pool: asyncpg.Pool[Any],
    queue: Queue,
    registry: HandlerRegistry | HandlerFactory,
    *,
    settings: EngineSettings = FAST,
    start: bool = True,
    backend: BackendKind | LocalBackend = "local",
    dsn: str | None = None,
) -> AsyncIterator[Engine]:
    """The engine loop on ``queue``; stopped and closed (Ray actors destroyed) after.

    ``backend="ray"`` hosts shards and pools in Ray actors of the session's local Ray
    (``ray_support``); it needs the ``dsn`` and a picklable handler factory. A
    ``LocalBackend`` given (one that injects a fault, say) is used as it is.
    """
    if isinstance(backend, LocalBackend):
        hosts: Any = backend
    elif backend == "ray":
        from ray_support import ray_backend

        assert dsn is not None, "Ray actors open their own pools from the DSN"
        assert not isinstance(registry, HandlerRegistry), "Ray actors need a factory"
        hosts = ray_backend(dsn, registry, settings)
    else:
        hosts = LocalBackend(pool, handlers_of(registry), settings)
    engine = Engine(pool, queue, hosts, settings)
    try:
        if start:
            await engine.start()
        yield engine
    finally:
        await engine.stop()
        destroy = getattr(hosts, "destroy", None)
        await (destroy() if destroy is not None else hosts.close())


@asynccontextmanager
async def running_engine(
    dsn: str,
    registry: HandlerRegistry | HandlerFactory,
    *,
    backend: MemoryBackend | None = None,
    settings: EngineSettings = FAST,
    start: bool = True,
    hosts: BackendKind = "local",
) -> AsyncIterator[Running]:
    """A pool, a memory queue, a started engine and the service, torn down in order."""
    pool = await create_pool(dsn, max_size=8)
    queue = MemoryQueue(backend or MemoryBackend())
    try:
        async with engine_on(
            pool, queue, registry, settings=settings, start=start, backend=hosts, dsn=dsn
        ) as engine:
            yield Running(pool, queue, engine, WorkflowService(pool, engine.runtime))
    finally:
        await queue.close()
        await pool.close()


def service_for(pool: asyncpg.Pool[Any], runtime: InstanceRuntime) -> WorkflowService:
    return WorkflowService(pool, runtime)


async def wait_for(
    service: WorkflowService,
    tenant_id: str,
    instance_id: uuid.UUID,
    predicate: Callable[[InstanceView], bool] | None = None,
    timeout: float = 20.0,
) -> InstanceView:
    """Polls until the instance satisfies ``predicate`` (default: finished)."""
    predicate = predicate or (lambda view: view.status != "running")
    deadline = time.monotonic() + timeout
    while True:
        view = await service.get(tenant_id, instance_id)
        if predicate(view):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"instance never got there; last seen: {view}")
        await asyncio.sleep(0.02)
