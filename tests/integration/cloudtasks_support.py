"""An engine on the Cloud Tasks driver: emulator -> HTTP push -> the worker's app under uvicorn."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import uvicorn
from runtime_support import FAST, BackendKind, engine_on, free_port

from statefleet.api.app import create_worker_app
from statefleet.api.settings import ApiSettings
from statefleet.drivers.cloudtasks import CloudTasksConfig, CloudTasksQueue
from statefleet.engine.handlers import HandlerFactory, HandlerRegistry
from statefleet.engine.ports import QUEUE_NAMES
from statefleet.engine.runtime import Engine, EngineSettings, WorkflowService
from statefleet.engine.store.db import create_pool

PROJECT = "statefleet-test"
LOCATION = "us-central1"


def emulator_config(emulator_host: str, base_url: str, secret: str | None) -> CloudTasksConfig:
    """A fresh queue prefix per call, so tests never see each other's tasks."""
    return CloudTasksConfig(
        project=PROJECT,
        location=LOCATION,
        target_base_url=base_url,
        queue_prefix=f"t{uuid.uuid4().hex[:10]}-",
        queue_secret=secret,
        emulator_host=emulator_host,
    )


async def create_queues(queue: CloudTasksQueue) -> None:
    """Create the two Cloud Tasks queues (production deploys create them with Terraform)."""
    client = queue.client()
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    for name in sorted(QUEUE_NAMES):
        await client.create_queue(parent=parent, queue={"name": queue.queue_path(name)})


@asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[None]:
    """Serve ``app`` on 127.0.0.1:``port`` inside this event loop until the block ends."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(60):
            while not server.started:
                if task.done():
                    await task
                    raise RuntimeError("uvicorn exited before it started")
                await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        await task


@dataclass
class CloudEngine:
    pool: asyncpg.Pool[Any]
    queue: CloudTasksQueue
    engine: Engine
    service: WorkflowService
    base_url: str


@asynccontextmanager
async def cloudtasks_engine(
    dsn: str,
    registry: HandlerRegistry | HandlerFactory,
    emulator_host: str,
    *,
    secret: str | None = "s3cret",
    settings: EngineSettings = FAST,
    backend: BackendKind = "local",
) -> AsyncIterator[CloudEngine]:
    """Pool, Cloud Tasks driver on the emulator, started engine, worker app serving pushes."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    pool = await create_pool(dsn, max_size=8)
    queue = CloudTasksQueue(emulator_config(emulator_host, base_url, secret))
    env = {"WORKFLOW_QUEUE_SECRET": secret} if secret else {}
    try:
        await create_queues(queue)
        async with engine_on(
            pool, queue, registry, settings=settings, backend=backend, dsn=dsn
        ) as engine:
            app = create_worker_app(ApiSettings(env=env), pool=pool, queue=queue, engine=engine)
            async with serving(app, port):
                yield CloudEngine(
                    pool, queue, engine, WorkflowService(pool, engine.runtime), base_url
                )
    finally:
        await queue.close()
        await pool.close()
