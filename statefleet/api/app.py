"""``create_app``: the v1 HTTP API as an app factory, with no module-level state.

The lifespan opens what was not injected (the pool from ``DATABASE_URL``, the queue
driver the environment selects) and closes only what it opened, so tests can
inject the pool, queue and engine they run and keep ownership of them.
``create_worker_app`` is the small server of ``statefleet worker``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI

from statefleet import __version__
from statefleet.api.console import install_console
from statefleet.api.errors import JSONBody, install_error_handlers
from statefleet.api.limits import BodyLimit
from statefleet.api.metrics import ApiMetrics, MetricsMiddleware
from statefleet.api.responses import exact_openapi, operation_id
from statefleet.api.routes import (
    admin,
    batches,
    definitions,
    health,
    instances,
    internal,
    schedules,
    tasks,
    upgrades,
)
from statefleet.api.settings import ApiSettings
from statefleet.api.state import AppState
from statefleet.api.tracing import TracingMiddleware
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.handlers import HandlerFactory
from statefleet.engine.ports import Queue
from statefleet.engine.runtime import InstanceRuntime, Publisher, WorkflowService
from statefleet.engine.runtime.engine import Engine
from statefleet.engine.runtime.local import LocalBackend
from statefleet.engine.runtime.settings import EngineSettings
from statefleet.engine.runtime.tally import Tally
from statefleet.engine.store.db import create_pool
from statefleet.registries import builtin_registry

__all__ = ["create_app", "create_worker_app"]


def create_app(
    settings: ApiSettings,
    *,
    pool: asyncpg.Pool[Any] | None = None,
    queue: Queue | None = None,
    service: WorkflowService | None = None,
    handlers: HandlerFactory | None = None,
    engine_settings: EngineSettings | None = None,
    run_engine: bool | None = None,
    engine_tally: Tally | None = None,
) -> FastAPI:
    """The API app.

    Args:
        settings: see :class:`ApiSettings`.
        pool: a pool to use (and not close); default: one opened from
            ``settings.database_url`` for the app's lifetime.
        queue: a queue driver to publish to (not closed); default: the driver
            ``settings.env`` selects.
        service: the service to call; default: one over ``pool`` and ``queue``.
        handlers, engine_settings: of the engine run inside the app (default: the
            built-in handlers with default settings, and ``EngineSettings()``).
        run_engine: run the engine (in-process backend) inside the app. Default:
            exactly when the app opened a memory queue itself, because no other
            process can consume a process-local queue. Under a push driver (Cloud
            Tasks) the broker pushes to ``statefleet worker``, not to the API.

    Raises:
        ValueError: at start-up, when no pool is injected and no database URL is set.
    """
    # engine_tally: the counts of an engine this process runs outside the app (up).
    metrics = ApiMetrics(engine_tally)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_pool = own_queue = None
        engine: Engine | None = None
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
            embed = run_engine
            if embed is None:
                embed = isinstance(own_queue, MemoryQueue)
            if embed:
                knobs = engine_settings or EngineSettings()
                backend = LocalBackend(the_pool, handlers or builtin_registry, knobs)
                engine = Engine(the_pool, the_queue, backend, knobs)
                metrics.tally = engine.tally
                await engine.start()
            the_service = service or WorkflowService(
                the_pool,
                engine.runtime
                if engine is not None
                else InstanceRuntime(the_pool, Publisher(the_pool, the_queue)),
                spec_limits=settings.spec_limits,
            )
            app.state.statefleet = AppState(
                settings, the_pool, the_queue, the_service, metrics, engine
            )
            yield
        finally:
            if engine is not None:
                await engine.close()
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
        generate_unique_id_function=operation_id,
    )
    install_error_handlers(app)
    for module in (
        definitions,
        instances,
        batches,
        tasks,
        schedules,
        upgrades,
        admin,
        health,
        internal,
    ):
        app.include_router(module.router)
    install_console(app)
    exact_openapi(app)
    # Added last = outermost: metrics time everything, including 413s.
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        timeout_s=settings.body_timeout_ms / 1000,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(TracingMiddleware)
    return app


def create_worker_app(
    settings: ApiSettings, *, pool: asyncpg.Pool[Any], queue: Queue, engine: Engine
) -> FastAPI:
    """The worker's own HTTP server: health, metrics, and the push routes.

    ``/healthz`` fails when the engine loop stopped beating (a hung worker is restarted
    by its orchestrator), ``/readyz`` when Postgres or the queue does not answer, and
    ``/internal/queues/*`` is where Cloud Tasks pushes jobs to this worker's engine.
    No tenant routes: those are the API's.
    """
    metrics = ApiMetrics(engine.tally)
    app = FastAPI(
        title="statefleet worker",
        version=__version__,
        default_response_class=JSONBody,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.statefleet = AppState(
        settings, pool, queue, WorkflowService(pool, engine.runtime), metrics, engine
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(internal.router)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        timeout_s=settings.body_timeout_ms / 1000,
    )
    return app
