"""Liveness, readiness and metrics: unauthenticated, for orchestrators and scrapers."""

from __future__ import annotations

import asyncio
import inspect

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from statefleet.api.errors import error_response
from statefleet.api.jsonbody import StrictJsonRoute
from statefleet.api.models import HealthOut
from statefleet.api.responses import errors
from statefleet.api.state import app_state

router = APIRouter(tags=["health"], route_class=StrictJsonRoute)

#: A readiness probe must answer quickly even when Postgres hangs.
READY_TIMEOUT_S = 2.0


@router.get("/healthz", response_model=HealthOut, responses=errors(503, auth=False))
async def healthz(request: Request) -> Response | HealthOut:
    """The process is up and, if it runs the engine, its loop is alive (not its dependencies)."""
    engine = app_state(request).engine
    if engine is not None and not engine.alive():
        return error_response(503, "engine_stalled", "the engine loop is not running")
    return HealthOut(status="ok")


@router.get("/readyz", response_model=HealthOut, responses=errors(503, auth=False))
async def readyz(request: Request) -> Response | HealthOut:
    """Postgres answers a query, and the queue answers its ``ping()`` when it has one."""
    state = app_state(request)
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            async with state.pool.acquire() as connection:
                await connection.fetchval("SELECT 1")
            ping = getattr(state.queue, "ping", None)
            if ping is not None:
                result = ping()
                if inspect.isawaitable(result):
                    await result
    except Exception as exc:  # any failure of a dependency means "not ready", not a 500
        return error_response(503, "not_ready", f"a dependency is unavailable: {exc!r}")
    return HealthOut(status="ok")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    state = app_state(request)
    body = await state.metrics.render(state.pool, state.queue)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
