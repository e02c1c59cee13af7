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

__all__ = ["PortTaken", "check_port", "listen", "serve"]


class PortTaken(OSError):
    """The HTTP port cannot be bound; the message names it and the option to change it."""


def listen(host: str, port: int, option: str = "--port") -> socket.socket:
    """A socket listening on ``host:port`` now, for :func:`serve` to serve on later.

    Bound with uvicorn's own options (``SO_REUSEADDR``). Port 0 takes a free port (the
    socket's ``getsockname`` says which) that nothing can take before it is served: a
    port probed and released could be, by one of the connections Ray's processes and
    the engine's actors open while the engine starts.

    Raises:
        PortTaken: the message names the address and ``option``.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
        return socket.create_server(infos[0][4][:2], family=infos[0][0])
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PortTaken(
            f"cannot listen on {host}:{port} ({reason}): another process is using port "
            f"{port}; choose a free one with {option} (for example {option} {port + 1})"
        ) from None


def check_port(host: str, port: int, option: str = "--port") -> None:
    """Fails now if ``host:port`` cannot be bound, before anything else has started.

    Raises:
        PortTaken: the message names the address and ``option``.
    """
    listen(host, port, option).close()


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the owner of the loop decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(app: Any, listener: socket.socket) -> Callable[[], Awaitable[None]]:
    """Starts serving ``app`` on ``listener`` (see :func:`listen`); returns the coroutine
    function that stops it (and closes the socket)."""
    host, port = listener.getsockname()[:2]
    # log_config=None: uvicorn's records go through the process's one logging setup
    # (statefleet.engine.logging_setup), its access log included.
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=True, lifespan="on", ws="none"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]), name=f"http-{host}:{port}")

    async def stop() -> None:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task

    while not server.started:
        if task.done():
            with contextlib.suppress(BaseException):
                task.result()
            raise OSError(f"the HTTP server on {host}:{port} did not start (see the log)")
        await asyncio.sleep(0.02)
    return stop
