"""Serving an ASGI app inside a running event loop, next to the engine.

``statefleet up`` serves the API and ``statefleet worker`` its own small app from the
same event loop as the engine, so neither may let uvicorn take over signals: the
command decides when to stop, and stops the server before the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn

__all__ = ["PortTaken", "check_port", "serve"]


class PortTaken(OSError):
    """The HTTP port cannot be bound; the message names it and the option to change it."""


def check_port(host: str, port: int, option: str = "--port") -> None:
    """Fails now if ``host:port`` cannot be bound, before anything else has started.

    Binds and closes a socket with uvicorn's own options (``SO_REUSEADDR``), so a port
    in TIME_WAIT passes here exactly as it would there.

    Raises:
        PortTaken: the message names the address and ``option``.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
        with socket.create_server(infos[0][4][:2], family=infos[0][0]):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PortTaken(
            f"cannot listen on {host}:{port} ({reason}): another process is using port "
            f"{port}; choose a free one with {option} (for example {option} {port + 1})"
        ) from None


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
    # log_config=None: uvicorn's records go through the process's one logging setup
    # (statefleet.engine.logging_setup), its access log included.
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=True, lifespan="on", ws="none"
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
