"""The optional ``traceContext`` of queue jobs: carried when given, omitted by old
producers, ignored (not refused) when it is not an object of strings."""

from __future__ import annotations

import uuid

from opentelemetry import trace

from statefleet.engine import tracing
from statefleet.engine.ports.queue import (
    ORCHESTRATOR_QUEUE,
    TASK_JOB,
    TASK_RUNNER_QUEUE,
    QueueJob,
    event_job,
    parse_event_job,
    parse_task_job,
)
from statefleet.engine.runtime.instances import event_outbox_row

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_event_jobs_carry_it_and_old_ones_do_without() -> None:
    job = event_job(
        tenant_id="t",
        instance_id="i",
        event_id="e",
        event_type="GO",
        trace={"traceparent": TRACEPARENT},
    )
    assert job.data["traceContext"] == {"traceparent": TRACEPARENT}
    assert parse_event_job(job).trace == {"traceparent": TRACEPARENT}
    old = event_job(tenant_id="t", instance_id="i", event_id="e", event_type="GO")
    assert "traceContext" not in old.data
    assert parse_event_job(old).trace is None


def test_an_odd_trace_context_is_ignored_not_refused() -> None:
    data = {"tenantId": "t", "instanceId": "i", "event": {"id": "e", "type": "GO"}}
    for odd in ("00-x", ["a"], {"traceparent": 1}):
        parsed = parse_event_job(
            QueueJob(ORCHESTRATOR_QUEUE, "event", {**data, "traceContext": odd})
        )
        assert parsed.trace is None
    task = QueueJob(
        TASK_RUNNER_QUEUE,
        TASK_JOB,
        {"tenantId": "t", "taskId": "x", "traceContext": {"traceparent": TRACEPARENT}},
    )
    assert parse_task_job(task).trace == {"traceparent": TRACEPARENT}


def _remote_span() -> trace.Span:
    """A valid span context (as a job's traceContext would give), recording nothing."""
    context = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.NonRecordingSpan(context)


def test_an_engine_made_event_row_carries_what_its_data_parses_to() -> None:
    """Engine.route delivers the carried event instead of parsing the row's data: the
    two must be the same, trace included."""
    instance_id = uuid.uuid4()
    plain = event_outbox_row("t", instance_id, "e1", "GO", {"n": 1})
    with trace.use_span(_remote_span()):
        traced = event_outbox_row("t", instance_id, "e2", "GO")
    for row in (plain, traced):
        assert row.event == parse_event_job(row.job())
    assert plain.event is not None
    assert plain.event.trace is None
    assert traced.event is not None
    assert traced.event.trace is not None
    assert traced.event.trace["traceparent"].startswith("00-0af7651916cd43dd")


def test_current_makes_a_span_current_and_the_no_op_span_hides_an_outer_one() -> None:
    assert tracing.carrier() is None
    with tracing.current(trace.INVALID_SPAN) as span:  # tracing off: nothing changes
        assert span is trace.INVALID_SPAN
        assert tracing.carrier() is None
    with tracing.current(_remote_span()):
        outer = tracing.carrier()
        assert outer is not None
        assert outer["traceparent"].startswith("00-0af7651916cd43dd")
        # An attempt with no trace of its own sends its events without the outer one.
        with tracing.current(trace.INVALID_SPAN):
            assert tracing.carrier() is None
        assert tracing.carrier() == outer
    assert tracing.carrier() is None
