"""Serving an ASGI app inside a running event loop, next to the engine.

``statefleet up`` serves the API and ``statefleet worker`` its own small app from the
same event loop as the engine, so neither may let uvicorn take over signals: the
command decides when to stop, and stops the server before the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn

__all__ = ["serve"]


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the owner of the loop decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(app: Any, host: str, port: int) -> Callable[[], Awaitable[None]]:
    """Starts serving ``app`` on ``host:port``; returns the coroutine function that stops it.

    Raises:
        OSError: the address cannot be bound (the message names it).
    """
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="on", ws="none"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(), name=f"http-{host}:{port}")

    async def stop() -> None:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task

    while not server.started:
        if task.done():
            with contextlib.suppress(BaseException):
                task.result()
            raise OSError(f"cannot listen on {host}:{port} (is the port taken?)")
        await asyncio.sleep(0.02)
    return stop
