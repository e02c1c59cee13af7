"""OpenTelemetry tracing: one trace per event, from the API request to the task handler.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (``statefleet.config.Settings``), in
which case :func:`configure_tracing` installs the SDK with a batching OTLP/HTTP exporter
in every statefleet process: the API, ``worker``, ``up`` and each shard and pool actor
(which get a :class:`TraceSettings` in their constructors, as they get their logging).
Until then the OpenTelemetry API is a no-op and nothing here costs more than a check.

The trace context crosses the queue inside the jobs: an optional ``traceContext``
object of W3C headers (``traceparent``, ``tracestate``) next to the job's data
(docs/queue-jobs.md); producers that omit it start no trace. The spans:

- ``POST /v1/...`` (the API, ``SERVER``): its request; an incoming ``traceparent``
  header is its parent;
- ``statefleet.step <EVENT>`` (the shard): one per event, from its arrival at the shard
  to its commit; the tasks that step created carry its context in their job;
- ``statefleet.task <TYPE>`` (the pool): one per attempt, around claim, handler and
  finish; the completion event carries its context back to the shard.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from statefleet.engine.record import record

__all__ = [
    "TRACER",
    "Span",
    "SpanKind",
    "TraceSettings",
    "carrier",
    "carrier_of",
    "configure_tracing",
    "current",
    "parent",
    "start_span",
]

#: The tracer every statefleet span comes from (a no-op until configure_tracing).
TRACER = trace.get_tracer("statefleet")
_configured: str | None = None
_lock = threading.Lock()


@record
class TraceSettings:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` (None: no tracing) and ``OTEL_SERVICE_NAME``."""

    endpoint: str | None = None
    service_name: str = "statefleet"
    #: How often the exporter sends what it batched (ms).
    export_interval_ms: int = 1_000


def configure_tracing(settings: TraceSettings | None) -> None:
    """Installs the SDK exporting to ``settings.endpoint`` (OTLP/HTTP); once per process."""
    global _configured
    if settings is None or not settings.endpoint:
        return
    with _lock:
        if _configured is not None:
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        endpoint = settings.endpoint.rstrip("/") + "/v1/traces"
        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        processor = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint),
            schedule_delay_millis=settings.export_interval_ms,
        )
        provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        _configured = endpoint


def carrier() -> dict[str, str] | None:
    """The current span's context as W3C headers for a queue job; None when not tracing."""
    return carrier_of(trace.get_current_span())


def carrier_of(span: trace.Span) -> dict[str, str] | None:
    """``span``'s context as W3C headers; None for a span that records nothing."""
    if not span.get_span_context().is_valid:
        return None
    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return headers or None


def parent(headers: Mapping[str, Any] | None) -> Context | None:
    """The context a job's ``traceContext`` (or a request's headers) carries, if any."""
    if not headers:
        return None
    return propagate.extract({str(k): str(v) for k, v in headers.items()})


def start_span(name: str, headers: Mapping[str, Any] | None, attributes: Mapping[str, str]) -> Span:
    """A span under the context ``headers`` carry (a job's ``traceContext``), started
    now and ended by the caller; a no-op span when there is no context to continue."""
    if not headers:
        return trace.INVALID_SPAN
    return TRACER.start_span(name, context=parent(headers), attributes=dict(attributes))


def current(span: Span) -> AbstractContextManager[Span]:
    """Makes ``span`` the current one for the block (the events it sends carry it) and
    ends it afterwards.

    With tracing off, ``span`` is the no-op span and so is the current one: nothing
    changes, and the block runs without ``use_span``'s context switch (2.5 us of a
    task attempt's Python, about 1% of a hello instance's).
    """
    if span is trace.INVALID_SPAN and not trace.get_current_span().get_span_context().is_valid:
        return nullcontext(span)
    return trace.use_span(span, end_on_exit=True)
