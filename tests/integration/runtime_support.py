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
from typing import Any

import asyncpg
from aiosmtpd.controller import Controller

from statefleet.drivers.memory import MemoryBackend, MemoryQueue
from statefleet.engine.handlers import HandlerRegistry, SmtpSettings
from statefleet.engine.runtime import (
    InstanceRuntime,
    InstanceView,
    TaskRunnerSettings,
    Worker,
    WorkerSettings,
    WorkflowService,
)
from statefleet.engine.store.db import create_pool

FAST = WorkerSettings(
    event_batch_wait_ms=2,
    sweep_interval_ms=100,
    sweep_grace_ms=200,
    # A job a broker lost (e.g. across a Redis restart) comes back well within the
    # tests' wait limits, yet a batch queued for a few seconds is not re-sent.
    sweep_event_grace_ms=5_000,
    tasks=TaskRunnerSettings(default_lease_ms=30_000, lease_margin_ms=200),
)


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
class Engine:
    pool: asyncpg.Pool[Any]
    queue: MemoryQueue
    worker: Worker
    service: WorkflowService


@asynccontextmanager
async def running_engine(
    dsn: str,
    registry: HandlerRegistry,
    *,
    backend: MemoryBackend | None = None,
    settings: WorkerSettings = FAST,
    start: bool = True,
) -> AsyncIterator[Engine]:
    """A pool, a memory queue, a started worker and the service, torn down in order."""
    pool = await create_pool(dsn, max_size=8)
    queue = MemoryQueue(backend or MemoryBackend())
    worker = Worker(pool, queue, registry, settings=settings)
    service = WorkflowService(pool, worker.instances)
    if start:
        await worker.start()
    try:
        yield Engine(pool, queue, worker, service)
    finally:
        await worker.stop()
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
