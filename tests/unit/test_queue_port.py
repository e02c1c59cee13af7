"""The queue port's wire format: job builders, parsers, and the malformed-job errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from statefleet.engine.ports import (
    EVENT_JOB,
    ORCHESTRATOR_QUEUE,
    QUEUE_NAMES,
    TASK_JOB,
    TASK_RUNNER_QUEUE,
    EventJobData,
    MalformedJobError,
    PartialBatchFailure,
    QueueJob,
    TaskJobData,
    event_job,
    parse_event_job,
    parse_job,
    parse_task_job,
    task_dedupe_key,
    task_job,
)


def _event_data(**event: Any) -> dict[str, Any]:
    return {"tenantId": "t1", "instanceId": "i1", "event": {"id": "e1", "type": "GO", **event}}


def test_queue_names_match_the_contract() -> None:
    assert ORCHESTRATOR_QUEUE == "workflow-orchestrator"
    assert TASK_RUNNER_QUEUE == "workflow-task-runner"
    assert {ORCHESTRATOR_QUEUE, TASK_RUNNER_QUEUE} == QUEUE_NAMES
    assert (EVENT_JOB, TASK_JOB) == ("event", "task")


def test_event_job_has_the_wire_shape_and_dedupes_by_event_id() -> None:
    job = event_job(
        tenant_id="t1", instance_id="i1", event_id="e1", event_type="GO", payload={"a": 1}
    )
    assert job == QueueJob(
        "workflow-orchestrator",
        "event",
        {
            "tenantId": "t1",
            "instanceId": "i1",
            "event": {"id": "e1", "type": "GO", "payload": {"a": 1}},
        },
        dedupe_key="e1",
    )


def test_event_job_without_payload_sends_an_empty_object() -> None:
    job = event_job(tenant_id="t1", instance_id="i1", event_id="e1", event_type="GO")
    assert job.data["event"]["payload"] == {}


def test_event_job_copies_the_payload() -> None:
    payload = {"a": 1}
    job = event_job(
        tenant_id="t1", instance_id="i1", event_id="e1", event_type="GO", payload=payload
    )
    payload["a"] = 2
    assert job.data["event"]["payload"] == {"a": 1}


def test_task_job_has_the_wire_shape_and_dedupes_by_task_and_attempt() -> None:
    run_at = datetime(2030, 1, 1, tzinfo=UTC)
    job = task_job(tenant_id="t1", task_id="task-9", attempt=2, run_at=run_at)
    assert job.queue == "workflow-task-runner"
    assert job.name == "task"
    assert job.data == {"tenantId": "t1", "taskId": "task-9"}
    assert job.dedupe_key == "task-9-2"
    assert job.run_at == run_at


def test_task_dedupe_key_differs_per_attempt_and_has_no_colon() -> None:
    keys = {task_dedupe_key("3f2c-aa", attempt) for attempt in range(3)}
    assert len(keys) == 3
    assert all(":" not in key for key in keys)


@pytest.mark.parametrize("attempt", [-1, True, 1.0, "1"])
def test_task_dedupe_key_refuses_a_bad_attempt(attempt: Any) -> None:
    with pytest.raises(ValueError, match="attempt"):
        task_dedupe_key("t", attempt)


@pytest.mark.parametrize(
    ("field", "value"),
    [("tenant_id", ""), ("instance_id", ""), ("event_id", ""), ("event_type", "")],
)
def test_event_job_refuses_empty_identifiers(field: str, value: str) -> None:
    args: dict[str, Any] = {
        "tenant_id": "t",
        "instance_id": "i",
        "event_id": "e",
        "event_type": "GO",
    }
    args[field] = value
    with pytest.raises(MalformedJobError, match="must not be empty"):
        event_job(**args)


def test_task_job_refuses_an_empty_task_id() -> None:
    with pytest.raises(MalformedJobError, match=r"data\.taskId must not be empty"):
        task_job(tenant_id="t", task_id="", attempt=0)


def test_run_at_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        QueueJob("q", "n", {}, run_at=datetime(2030, 1, 1))


def test_dedupe_key_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="dedupe_key"):
        QueueJob("q", "n", {}, dedupe_key="")


def test_parse_event_job_roundtrips_the_builder() -> None:
    job = event_job(
        tenant_id="t1",
        instance_id="i1",
        event_id="e1",
        event_type="GO",
        payload={"x": [1]},
        run_at=datetime.now(UTC) + timedelta(seconds=1),
    )
    assert parse_event_job(job) == EventJobData("t1", "i1", "e1", "GO", {"x": [1]})


def test_parse_task_job_roundtrips_the_builder() -> None:
    job = task_job(tenant_id="t1", task_id="k", attempt=0)
    assert parse_task_job(job) == TaskJobData("t1", "k")


@pytest.mark.parametrize("event", [{}, {"payload": None}])
def test_an_omitted_or_null_payload_reads_as_an_empty_object(event: dict[str, Any]) -> None:
    job = parse_job(ORCHESTRATOR_QUEUE, "event", _event_data(**event))
    assert parse_event_job(job).payload == {}
    assert job.dedupe_key == "e1"


@pytest.mark.parametrize(("given", "read"), [("EMAIL", "EMAIL"), (7, None), (None, None)])
def test_a_task_jobs_type_is_an_advisory_string(given: object, read: str | None) -> None:
    job = parse_job(TASK_RUNNER_QUEUE, "task", {"tenantId": "t1", "taskId": "k", "taskType": given})
    assert parse_task_job(job).task_type == read


def test_parse_job_accepts_a_task_and_ignores_unknown_keys() -> None:
    data = {"tenantId": "t1", "taskId": "k", "traceId": "abc"}
    job = parse_job(TASK_RUNNER_QUEUE, "task", data)
    assert job == QueueJob(TASK_RUNNER_QUEUE, "task", data)
    assert parse_task_job(job) == TaskJobData("t1", "k")


@pytest.mark.parametrize(
    ("queue", "name", "data", "reason"),
    [
        ("workflow-nope", "event", _event_data(), "unknown queue 'workflow-nope'"),
        (ORCHESTRATOR_QUEUE, None, _event_data(), "job name must be a string, got null"),
        (ORCHESTRATOR_QUEUE, "task", _event_data(), "job name must be 'event', got 'task'"),
        (TASK_RUNNER_QUEUE, "event", {"tenantId": "t", "taskId": "k"}, "must be 'task'"),
        (ORCHESTRATOR_QUEUE, "event", None, "data must be a JSON object, got null"),
        (ORCHESTRATOR_QUEUE, "event", [1], "data must be a JSON object, got array"),
        (ORCHESTRATOR_QUEUE, "event", "{}", "data must be a JSON object, got string"),
        (ORCHESTRATOR_QUEUE, "event", {1: "x"}, "data must have string keys"),
        (
            ORCHESTRATOR_QUEUE,
            "event",
            {"instanceId": "i", "event": {"id": "e", "type": "GO"}},
            "data.tenantId is missing",
        ),
        (
            ORCHESTRATOR_QUEUE,
            "event",
            {"tenantId": 7, "instanceId": "i", "event": {"id": "e", "type": "GO"}},
            "data.tenantId must be a string, got number",
        ),
        (
            ORCHESTRATOR_QUEUE,
            "event",
            {"tenantId": "t", "instanceId": "", "event": {"id": "e", "type": "GO"}},
            "data.instanceId must not be empty",
        ),
        (
            ORCHESTRATOR_QUEUE,
            "event",
            {"tenantId": "t", "instanceId": "i"},
            "data.event must be a JSON object, got null",
        ),
        (
            ORCHESTRATOR_QUEUE,
            "event",
            {"tenantId": "t", "instanceId": "i", "event": {"type": "GO"}},
            "data.event.id is missing",
        ),
        (
            ORCHESTRATOR_QUEUE,
            "event",
            {"tenantId": "t", "instanceId": "i", "event": {"id": "e", "type": True}},
            "data.event.type must be a string, got boolean",
        ),
        (
            ORCHESTRATOR_QUEUE,
            "event",
            _event_data(payload=[1, 2]),
            "data.event.payload must be a JSON object, got array",
        ),
        (TASK_RUNNER_QUEUE, "task", {"tenantId": "t"}, "data.taskId is missing"),
        (
            TASK_RUNNER_QUEUE,
            "task",
            {"tenantId": "t", "taskId": 1.5},
            "data.taskId must be a string, got number",
        ),
    ],
)
def test_parse_job_names_the_reason_a_job_is_malformed(
    queue: str, name: object, data: object, reason: str
) -> None:
    with pytest.raises(MalformedJobError) as caught:
        parse_job(queue, name, data)
    assert reason in caught.value.reason
    assert caught.value.queue == queue
    assert str(caught.value) == f"malformed {queue} job: {caught.value.reason}"


def test_malformed_job_is_a_value_error() -> None:
    assert issubclass(MalformedJobError, ValueError)


def test_parsing_a_job_of_the_other_kind_is_malformed() -> None:
    task = task_job(tenant_id="t", task_id="k", attempt=0)
    with pytest.raises(MalformedJobError, match="expected a job on 'workflow-orchestrator'"):
        parse_event_job(task)
    wrong_name = QueueJob(TASK_RUNNER_QUEUE, "event", dict(task.data))
    with pytest.raises(MalformedJobError, match="job name must be 'task'"):
        parse_task_job(wrong_name)


def test_partial_batch_failure_keeps_the_failed_jobs() -> None:
    jobs = [task_job(tenant_id="t", task_id=str(n), attempt=0) for n in range(3)]
    failure = PartialBatchFailure(jobs[1:])
    assert failure.failed == tuple(jobs[1:])
    assert "2 job(s)" in str(failure)
