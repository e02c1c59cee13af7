"""The real API over real HTTP: uvicorn on a free port in the test's loop, httpx clients.

``running_api`` starts an engine (pool, memory queue, started engine loop) with
``running_engine``, injects it into ``create_app``, serves it with uvicorn on
127.0.0.1, creates two tenants, and tears everything down in reverse order.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from runtime_support import Running, free_port, running_engine

from statefleet.api import ApiSettings, create_app
from statefleet.engine.handlers import HandlerRegistry
from statefleet.engine.handlers.builtin import noop_handler
from statefleet.engine.runtime.tenants import create_tenant

HELLO: dict[str, Any] = json.loads(
    (pathlib.Path(__file__).parent.parent / "fixtures" / "hello-workflow.json").read_text()
)
ADMIN_KEY = "admin-test-key-0123456789"


def hello_registry() -> HandlerRegistry:
    """EMAIL as NOOP: the hello workflow completes without a mail server."""
    registry = HandlerRegistry()
    registry.register("NOOP", noop_handler)
    registry.register("EMAIL", noop_handler)
    return registry


@dataclass
class Api:
    url: str
    engine: Running
    tenants: dict[str, tuple[str, str]]  # name -> (tenant id, api key)

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60, **kwargs)


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serves ``app`` with uvicorn on a free local port until the block ends."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def running_api(
    dsn: str, registry: HandlerRegistry | None = None, *, max_body_bytes: int = 1024 * 1024
) -> AsyncIterator[Api]:
    async with running_engine(dsn, registry or hello_registry()) as engine:
        tenants = {}
        async with engine.pool.acquire() as connection:
            for name in ("acme", "globex"):
                created = await create_tenant(connection, name)
                tenants[name] = (created.tenant_id, created.api_key)
        settings = ApiSettings(admin_key=ADMIN_KEY, max_body_bytes=max_body_bytes)
        app = create_app(settings, pool=engine.pool, queue=engine.queue, service=engine.service)
        async with serve(app) as url:
            yield Api(url, engine, tenants)


def key(api: Api, tenant: str = "acme") -> str:
    """The API key of one of ``running_api``'s tenants (``acme`` or ``globex``)."""
    return api.tenants[tenant][1]
