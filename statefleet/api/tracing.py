"""The API's side of tracing: one ``SERVER`` span per request (see engine/tracing.py).

A pure ASGI middleware, so the span is the current one while the route runs: the event
jobs a request sends (a start, a send) carry its context in their ``traceContext``. An
incoming ``traceparent`` header makes the request part of the caller's trace. With
tracing off the OpenTelemetry API makes this a no-op.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from statefleet.engine import tracing

__all__ = ["TracingMiddleware"]


class TracingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with tracing.TRACER.start_as_current_span(
            f"{method} {scope['path']}",
            context=tracing.parent(headers),
            kind=tracing.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:

            async def tracking_send(event: Message) -> None:
                if event["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", event["status"])
                await send(event)

            try:
                await self.app(scope, receive, tracking_send)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
