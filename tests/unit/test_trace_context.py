"""The optional ``traceContext`` of queue jobs: carried when given, omitted by old
producers, ignored (not refused) when it is not an object of strings."""

from __future__ import annotations

from statefleet.engine.ports.queue import (
    ORCHESTRATOR_QUEUE,
    TASK_JOB,
    TASK_RUNNER_QUEUE,
    QueueJob,
    event_job,
    parse_event_job,
    parse_task_job,
)

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
