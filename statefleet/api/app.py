"""``create_app``: the v1 HTTP API as an app factory, with no module-level state.

The lifespan opens what was not injected (the pool from ``DATABASE_URL``, the queue
driver the environment selects) and closes only what it opened, so tests can
inject the pool, queue and worker they run and keep ownership of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI

from statefleet import __version__
from statefleet.api.errors import JSONBody, install_error_handlers
from statefleet.api.limits import BodyLimit
from statefleet.api.metrics import ApiMetrics, MetricsMiddleware
from statefleet.api.routes import (
    admin,
    batches,
    definitions,
    health,
    instances,
    internal,
    tasks,
)
from statefleet.api.settings import ApiSettings
from statefleet.api.state import AppState
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.handlers import HandlerRegistry
from statefleet.engine.ports import Queue
from statefleet.engine.runtime import InstanceRuntime, Publisher, Worker, WorkflowService
from statefleet.engine.store.db import create_pool

__all__ = ["create_app"]


def create_app(
    settings: ApiSettings,
    *,
    pool: asyncpg.Pool[Any] | None = None,
    queue: Queue | None = None,
    service: WorkflowService | None = None,
    registry: HandlerRegistry | None = None,
    embedded_worker: bool | None = None,
) -> FastAPI:
    """The API app.

    Args:
        settings: see :class:`ApiSettings`.
        pool: a pool to use (and not close); default: one opened from
            ``settings.database_url`` for the app's lifetime.
        queue: a queue driver to publish to (not closed); default: the driver
            ``settings.env`` selects.
        service: the service to call; default: one over ``pool`` and ``queue``.
            Inject the worker's service to share its machine cache in one process.
        registry: handlers of an embedded worker (default: the built-ins).
        embedded_worker: run a worker inside the app. Default: exactly when the app
            opened a memory queue or a push driver (Cloud Tasks) itself, because no
            other process can consume a process-local queue, and pushes arrive here.

    Raises:
        ValueError: at start-up, when no pool is injected and no database URL is set.
    """
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_pool = own_queue = None
        worker: Worker | None = None
        try:
            if pool is None:
                if not settings.database_url:
                    raise ValueError("DATABASE_URL is not set and no pool was given")
                own_pool = await create_pool(settings.database_url)
            if queue is None:
                from statefleet.drivers.config import create_queue

                own_queue = create_queue(settings.env)
            the_pool = pool or own_pool
            the_queue = queue or own_queue
            assert the_pool is not None
            assert the_queue is not None
            embed = embedded_worker
            if embed is None:
                # A push driver delivers to this process's HTTP routes: it must run one.
                embed = isinstance(own_queue, MemoryQueue) or hasattr(own_queue, "push_bridge")
            if embed:
                worker = Worker(
                    the_pool,
                    the_queue,
                    registry or HandlerRegistry.with_builtins(),
                    observer=metrics,
                )
                await worker.start()
                bridge = getattr(the_queue, "push_bridge", None)
                if bridge is not None:
                    bridge.dead_letter = worker.dead_letter
            the_service = service or WorkflowService(
                the_pool,
                worker.instances
                if worker is not None
                else InstanceRuntime(the_pool, Publisher(the_pool, the_queue)),
            )
            app.state.statefleet = AppState(settings, the_pool, the_queue, the_service, metrics)
            yield
        finally:
            if worker is not None:
                await worker.stop()
            if own_queue is not None:
                await own_queue.close()
            if own_pool is not None:
                await own_pool.close()

    app = FastAPI(
        title="statefleet",
        version=__version__,
        description="Durable XState-style workflows on Postgres. Contract: docs/api.md.",
        default_response_class=JSONBody,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (definitions, instances, batches, tasks, admin, health, internal):
        app.include_router(module.router)
    # Added last = outermost: metrics time everything, including 413s.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
