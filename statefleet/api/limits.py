"""Request body limits enforced while the body streams in, before it is parsed.

``Content-Length`` over the limit answers 413 at once; a chunked body is counted
as it arrives and cut off at the limit, so a client cannot make the server buffer
more than ``max_body_bytes`` whatever headers it sends.

A body must also arrive whole within ``timeout_s`` of the first read: a client that
stalls, or sends fewer bytes than its ``Content-Length`` says, gets 408
``request_timeout`` and a closed connection. uvicorn and h11 have no such setting
(uvicorn's ``timeout_keep_alive`` only covers the time between requests), so it is
done here, where the body is read.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from statefleet.api.errors import error_response

__all__ = ["BodyLimit"]

#: The rest of a late body may still come: the connection cannot serve another request.
_CLOSE = {"Connection": "close"}


class _TooLarge(HTTPException):
    """An HTTPException so FastAPI's body reader re-raises it (it turns others into 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class _TimedOut(HTTPException):
    """An HTTPException for the same reason as ``_TooLarge``."""

    def __init__(self, message: str) -> None:
        super().__init__(408, message, headers=_CLOSE)


class BodyLimit:
    """ASGI middleware: bodies over ``max_bytes`` answer 413 ``payload_too_large``, bodies
    not complete ``timeout_s`` after the first read 408 ``request_timeout``."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 5.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than {self.max_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await error_response(413, "payload_too_large", message)(scope, receive, send)
            return
        received = 0
        started = False
        deadline: float | None = None
        complete = False
        late = f"the request body did not arrive within {self.timeout_s:g} s"

        async def limited_receive() -> Message:
            nonlocal received, deadline, complete
            if complete:  # after the body only a disconnect can come: no deadline
                return await receive()
            if deadline is None:
                deadline = time.monotonic() + self.timeout_s
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    event = await receive()
            except TimeoutError:
                raise _TimedOut(late) from None
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(message)
                complete = not event.get("more_body", False)
            return event

        async def tracking_send(event: Message) -> None:
            nonlocal started
            if event["type"] == "http.response.start":
                started = True
            await send(event)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await error_response(413, "payload_too_large", message)(scope, receive, send)
        except _TimedOut:
            if not started:
                answer = error_response(408, "request_timeout", late, headers=_CLOSE)
                await answer(scope, receive, send)
