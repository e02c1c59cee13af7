"""The queue port: the two job queues the engine needs, and what every driver owes it.

All work moves through two logical queues (their wire format: ``docs/queue-jobs.md``):
``workflow-orchestrator`` carries ``event`` jobs that advance an instance, and
``workflow-task-runner`` carries ``task`` jobs that run one attempt of a task. The
wire format is the same under every driver so that producers in other languages
(the original TypeScript service, a Node BullMQ script) can feed the engine; the
builders and parsers here are the one place that format is written down in Python.

:class:`Queue` is the interface the drivers in ``statefleet.drivers`` implement
(memory, BullMQ, Cloud Tasks). Its docstrings are the contract: the contract test
suite (``tests/integration/test_queue_contract.py``) runs the same cases against
every driver. Delivery is at least once under every driver; the engine makes it
effectively once (idempotent event application, task claims), and a periodic sweep
of due work in Postgres re-enqueues anything a driver dropped, so a lost message
delays work but never loses it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Protocol, TypeAlias

from statefleet.engine.jsonkind import json_kind
from statefleet.engine.record import record

__all__ = [
    "EVENT_JOB",
    "ORCHESTRATOR_QUEUE",
    "QUEUE_NAMES",
    "TASK_JOB",
    "TASK_RUNNER_QUEUE",
    "BatchHandler",
    "Consumer",
    "EventJobData",
    "JobHandler",
    "MalformedJobError",
    "PartialBatchFailure",
    "Queue",
    "QueueClosedError",
    "QueueJob",
    "TaskJobData",
    "TaskSuccess",
    "event_job",
    "parse_event_job",
    "parse_job",
    "parse_task_job",
    "task_dedupe_key",
    "task_job",
]

ORCHESTRATOR_QUEUE: Final = "workflow-orchestrator"
"""Queue of ``event`` jobs: apply one event to one workflow instance."""

TASK_RUNNER_QUEUE: Final = "workflow-task-runner"
"""Queue of ``task`` jobs: run one attempt of one task."""

EVENT_JOB: Final = "event"
TASK_JOB: Final = "task"

QUEUE_NAMES: Final = frozenset({ORCHESTRATOR_QUEUE, TASK_RUNNER_QUEUE})

# Each logical queue carries exactly one job name; a mismatch is a malformed job.
_JOB_NAME_OF_QUEUE: Final[Mapping[str, str]] = {
    ORCHESTRATOR_QUEUE: EVENT_JOB,
    TASK_RUNNER_QUEUE: TASK_JOB,
}


# --------------------------------------------------------------------------- errors


class MalformedJobError(ValueError):
    """A job that can never succeed: unknown queue, wrong job name, or data off-contract.

    Push drivers (Cloud Tasks) answer such a job with 2xx after recording a dead
    letter with :attr:`reason`, because Cloud Tasks would retry a 4xx forever; pull
    drivers (BullMQ) fail the job without retrying. ``reason`` names the offending
    field by its path in the job (``data.event.id``).
    """

    def __init__(self, queue: str, reason: str) -> None:
        self.queue = queue
        self.reason = reason
        super().__init__(f"malformed {queue} job: {reason}")


class QueueClosedError(RuntimeError):
    """The driver was closed: it accepts no new jobs and starts no new consumers."""


class PartialBatchFailure(Exception):
    """Raised by a :data:`BatchHandler` to fail only some jobs of its batch.

    The jobs in ``failed`` are redelivered after a backoff, exactly as if a
    single-job handler had raised for each; every other job of the batch counts as
    done. Raising any other exception fails the whole batch. This lets a batch
    handler acknowledge the hundreds of jobs it applied without one poison job
    dragging all of them back into the queue.
    """

    def __init__(self, failed: Sequence[QueueJob], message: str = "") -> None:
        self.failed = tuple(failed)
        super().__init__(message or f"{len(self.failed)} job(s) of the batch failed")


# --------------------------------------------------------------------------- jobs


@record
class QueueJob:
    """One job on one queue, as it travels on the wire.

    ``queue``, ``name`` and ``data`` are the wire format; ``data`` must survive a
    JSON round trip (drivers serialise it; the memory driver does too, so a job
    that works in tests works on Redis).

    ``dedupe_key`` and ``run_at`` are producer options. While a job with a given
    ``dedupe_key`` is pending on a queue, enqueuing another job with the same key
    there is a no-op. ``run_at`` (timezone-aware) means "not before": the job is
    not delivered earlier, and may be delivered later. On a *delivered* job both
    are whatever the driver can recover (push drivers receive only ``name`` and
    ``data``): handlers must rely on ``queue``, ``name`` and ``data`` alone.
    """

    queue: str
    name: str
    data: dict[str, Any]
    dedupe_key: str | None = None
    run_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.run_at is not None and self.run_at.utcoffset() is None:
            raise ValueError("QueueJob.run_at must be timezone-aware")
        if self.dedupe_key == "":
            raise ValueError("QueueJob.dedupe_key must be None or a non-empty string")


@record
class EventJobData:
    """The validated data of an ``event`` job (camelCase on the wire)."""

    tenant_id: str
    instance_id: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    #: ``traceContext``: W3C trace headers of the span that sent it (optional).
    trace: dict[str, str] | None = None
    #: Not on the wire: handed over by the engine's admitter (held work), so a shard
    #: commits an interactive event's instance before it (``runtime/shard.py``).
    admitted: bool = False
    #: Not on the wire: the task attempt whose result this event is, not yet committed.
    #: The step that applies the event marks the task succeeded in its own transaction,
    #: and applies the event only if the attempt still held its lease
    #: (``runtime/completions.py``).
    success: TaskSuccess | None = None


@record
class TaskSuccess:
    """A task attempt that succeeded, travelling with its events to their shard.

    Every event of one attempt (what its handler emitted, then its completion) carries
    the same object; the task is marked succeeded once, with ``output``.
    """

    task_id: uuid.UUID
    #: The attempt's lease owner: the success counts only while the lease is still its.
    lease_owner: str
    #: The handler's output as JSON text.
    output: str | None
    #: The completion event's id: recorded (not applied) if the task was cancelled while
    #: its handler ran (``runtime/completions.py``, ``record_late``).
    done_event_id: str | None


@record
class TaskJobData:
    """The validated data of a ``task`` job (camelCase on the wire)."""

    tenant_id: str
    task_id: str
    #: ``traceContext``: W3C trace headers of the step that created the task (optional).
    trace: dict[str, str] | None = None
    #: ``taskType``: the task's type, as its creator knew it (optional, advisory). A pool
    #: uses it to pick the type's concurrency slot without reading the task's row first;
    #: the attempt itself always runs what the row says.
    task_type: str | None = None
    #: Not on the wire: the task's row as it was claimed for the pool the engine hands
    #: the job to (its ``lease_owner`` is that pool's), so the pool runs the attempt
    #: without claiming it again: claimed by the admitter (``runtime/admission.py``) or
    #: by the step that created the task (``runtime/engine.py``, ``TaskClaim``).
    claim: dict[str, Any] | None = None
    #: Not on the wire: handed over by the engine's admitter (held work), so it waits
    #: for a pool slot behind interactive jobs (``runtime/slots.py``).
    admitted: bool = False


def task_dedupe_key(task_id: str, attempt: int) -> str:
    """The dedupe key of one attempt of a task: ``"<task id>-<attempt>"``.

    A hyphen, not a colon: BullMQ refuses custom job ids containing ``:``. The
    attempt is the last hyphen-separated part, so the key is unambiguous even when
    task ids contain hyphens (UUIDs).
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError(f"attempt must be a non-negative int, got {attempt!r}")
    return f"{task_id}-{attempt}"


def event_job(
    *,
    tenant_id: str,
    instance_id: str,
    event_id: str,
    event_type: str,
    payload: Mapping[str, Any] | None = None,
    run_at: datetime | None = None,
    trace: Mapping[str, str] | None = None,
) -> QueueJob:
    """Build the ``event`` job that applies one event to one instance.

    The dedupe key is the event id: the same event enqueued twice while pending is
    enqueued once (and applied once in any case, by the orchestrator).

    Raises:
        MalformedJobError: an id or the type is empty or not a string.
    """
    # The arguments are checked as they are, not by parsing the data built from them
    # (``_event_data``): the engine builds one job per event it makes, and the parse
    # (a second dict walk per field) was a tenth of a start's Python time.
    queue = ORCHESTRATOR_QUEUE
    _string(queue, tenant_id, "data.tenantId")
    _string(queue, instance_id, "data.instanceId")
    _string(queue, event_id, "data.event.id")
    _string(queue, event_type, "data.event.type")
    body = {} if payload is None else _object(queue, dict(payload), "data.event.payload")
    data: dict[str, Any] = {
        "tenantId": tenant_id,
        "instanceId": instance_id,
        "event": {"id": event_id, "type": event_type, "payload": body},
    }
    if trace:
        data["traceContext"] = dict(trace)
    return QueueJob(queue, EVENT_JOB, data, dedupe_key=event_id, run_at=run_at)


def task_job(
    *, tenant_id: str, task_id: str, attempt: int, run_at: datetime | None = None
) -> QueueJob:
    """Build the ``task`` job that runs one attempt of one task.

    The attempt is not in the data (the task runner reads it from the task's row
    when it claims the task); it only makes the dedupe key differ per attempt, so
    a retry can be enqueued while the failed attempt's key is still reserved.

    Raises:
        MalformedJobError: an id is empty or not a string.
        ValueError: ``attempt`` is not a non-negative int.
    """
    data: dict[str, Any] = {"tenantId": tenant_id, "taskId": task_id}
    _task_data(TASK_RUNNER_QUEUE, data)
    key = task_dedupe_key(task_id, attempt)
    return QueueJob(TASK_RUNNER_QUEUE, TASK_JOB, data, dedupe_key=key, run_at=run_at)


# --------------------------------------------------------------------------- parsing


def parse_job(queue: str, name: object, data: object) -> QueueJob:
    """Validate a job received from outside (an HTTP push, a foreign producer).

    Checks the queue is one of the two, the job name is the one that queue
    carries, and the data has the contract's shape. Unknown extra keys are ignored
    so that a newer producer can add fields. The returned job's ``dedupe_key`` is
    the event id for ``event`` jobs and ``None`` for ``task`` jobs (the attempt is
    not on the wire).

    Raises:
        MalformedJobError: with the reason; the job can never succeed.
    """
    expected = _JOB_NAME_OF_QUEUE.get(queue)
    if expected is None:
        known = ", ".join(sorted(QUEUE_NAMES))
        raise MalformedJobError(queue, f"unknown queue {queue!r} (known: {known})")
    if not isinstance(name, str):
        raise MalformedJobError(queue, f"job name must be a string, got {_kind(name)}")
    if name != expected:
        raise MalformedJobError(queue, f"job name must be {expected!r}, got {name!r}")
    job_data = _object(queue, data, "data")
    if queue == ORCHESTRATOR_QUEUE:
        event = _event_data(queue, job_data)
        return QueueJob(queue, name, job_data, dedupe_key=event.event_id)
    _task_data(queue, job_data)
    return QueueJob(queue, name, job_data)


def parse_event_job(job: QueueJob) -> EventJobData:
    """The typed data of an ``event`` job; an omitted or null payload becomes ``{}``.

    Raises:
        MalformedJobError: the job is not an ``event`` job on the orchestrator
            queue, or its data is off-contract.
    """
    _check_kind(job, ORCHESTRATOR_QUEUE)
    return _event_data(job.queue, _object(job.queue, job.data, "data"))


def parse_task_job(job: QueueJob) -> TaskJobData:
    """The typed data of a ``task`` job.

    Raises:
        MalformedJobError: the job is not a ``task`` job on the task-runner queue,
            or its data is off-contract.
    """
    _check_kind(job, TASK_RUNNER_QUEUE)
    return _task_data(job.queue, _object(job.queue, job.data, "data"))


def _check_kind(job: QueueJob, queue: str) -> None:
    expected = _JOB_NAME_OF_QUEUE[queue]
    if job.queue != queue:
        raise MalformedJobError(job.queue, f"expected a job on {queue!r}")
    if job.name != expected:
        raise MalformedJobError(job.queue, f"job name must be {expected!r}, got {job.name!r}")


def _event_data(queue: str, data: Mapping[str, Any]) -> EventJobData:
    tenant_id = _text(queue, data, "tenantId", "data.tenantId")
    instance_id = _text(queue, data, "instanceId", "data.instanceId")
    event = _object(queue, data.get("event"), "data.event")
    payload = event.get("payload")
    return EventJobData(
        tenant_id=tenant_id,
        instance_id=instance_id,
        event_id=_text(queue, event, "id", "data.event.id"),
        event_type=_text(queue, event, "type", "data.event.type"),
        payload={} if payload is None else _object(queue, payload, "data.event.payload"),
        trace=_trace(data),
    )


def _task_data(queue: str, data: Mapping[str, Any]) -> TaskJobData:
    return TaskJobData(
        tenant_id=_text(queue, data, "tenantId", "data.tenantId"),
        task_id=_text(queue, data, "taskId", "data.taskId"),
        trace=_trace(data),
        task_type=task_type if isinstance(task_type := data.get("taskType"), str) else None,
    )


def _trace(data: Mapping[str, Any]) -> dict[str, str] | None:
    """The optional ``traceContext``: only advisory, so an odd one is ignored, not refused."""
    value = data.get("traceContext")
    if not isinstance(value, dict):
        return None
    found = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return found or None


def _object(queue: str, value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedJobError(queue, f"{path} must be a JSON object, got {_kind(value)}")
    if value and not all(isinstance(key, str) for key in value):
        raise MalformedJobError(queue, f"{path} must have string keys")
    return value


def _text(queue: str, data: Mapping[str, Any], key: str, path: str) -> str:
    if key not in data:
        raise MalformedJobError(queue, f"{path} is missing")
    return _string(queue, data[key], path)


def _string(queue: str, value: object, path: str) -> str:
    if not isinstance(value, str):
        raise MalformedJobError(queue, f"{path} must be a string, got {_kind(value)}")
    if not value:
        raise MalformedJobError(queue, f"{path} must not be empty")
    return value


def _kind(value: object) -> str:
    return json_kind(value)


# --------------------------------------------------------------------------- the port

JobHandler: TypeAlias = Callable[[QueueJob], Awaitable[None]]
"""Handles one job. Returning means done; raising means redeliver after a backoff."""

BatchHandler: TypeAlias = Callable[[list[QueueJob]], Awaitable[None]]
"""Handles 1..max_batch_size jobs of one queue at once.

Returning means every job is done; raising :class:`PartialBatchFailure` redelivers
only the jobs it names; raising anything else redelivers the whole batch.
"""


class Consumer(Protocol):
    """A running subscription of one handler to one queue, returned by ``consume``."""

    @property
    def queue_name(self) -> str:
        """The queue this consumer takes jobs from."""
        ...

    async def stop(self) -> None:
        """Stop taking jobs, then wait until this consumer's in-flight handlers return.

        Obligations: idempotent (a second call waits like the first, then returns);
        jobs not yet handed to this consumer stay queued for other or later
        consumers of the same backend; a job whose handler finishes during ``stop``
        counts as done (or as failed, if it raises) exactly as at any other time.
        Blocks until the in-flight handlers return, plus, for a batch consumer, at
        most ``max_wait_ms`` while a batch is being gathered. If ``stop`` itself is
        cancelled, the in-flight handlers are cancelled and their jobs are
        redelivered: never lost.
        """
        ...


class Queue(Protocol):
    """The queue port: enqueue jobs and consume them, at least once, under any driver.

    Every driver (memory, BullMQ, Cloud Tasks) implements every method with the
    obligations written here; the contract test suite checks them. A driver
    instance is a client of a backend (Redis, Cloud Tasks, or an in-process
    ``MemoryBackend``): jobs belong to the backend, so a job enqueued by one
    client can be consumed by another of the same backend, and closing a client
    loses no job. A driver instance is used from one event loop.
    """

    async def enqueue(self, job: QueueJob, *, delay_ms: int = 0) -> None:
        """Add one job; it is delivered not before ``delay_ms`` from now nor ``job.run_at``.

        Obligations: idempotent per dedupe key while the job is pending (waiting,
        delayed, in flight, or waiting to be retried): a second job with the same
        ``queue`` and ``dedupe_key`` is silently dropped, whatever its data or
        delay. After the job is done a driver may keep the key reserved for a while
        (Cloud Tasks reserves a task name for about an hour), so new work needs a
        new key. When this returns, the job is accepted by the backend. Blocks for
        at most one backend round trip; never waits for a consumer.

        Raises:
            ValueError: ``delay_ms`` is negative.
            TypeError: ``job.data`` is not JSON-serialisable.
            QueueClosedError: the driver was closed.
        """
        ...

    async def enqueue_many(self, jobs: Iterable[QueueJob]) -> None:
        """Add many jobs, honouring each one's ``run_at`` and dedupe key as ``enqueue`` does.

        Exists because the actor layer enqueues hundreds of jobs at once: drivers
        batch the round trips (one Redis pipeline, concurrent Cloud Tasks creates).
        Jobs may be on different queues. Not atomic in general: if it raises, some
        jobs may have been accepted; calling it again with the same jobs is safe
        because of the dedupe keys. Two jobs with the same key in one call are
        enqueued once.

        Raises:
            TypeError: a job's data is not JSON-serialisable.
            QueueClosedError: the driver was closed.
        """
        ...

    async def consume(self, queue_name: str, handler: JobHandler, *, concurrency: int) -> Consumer:
        """Start delivering ``queue_name``'s jobs to ``handler``, at most ``concurrency`` at once.

        A job counts as done only when its handler returns. If the handler raises,
        the job is redelivered after a backoff (at least once; no ordering is
        promised, and a job may also be redelivered after a crash or a lost
        acknowledgement). Handler exceptions are logged by the driver, never
        propagated to the caller. Several consumers of one queue share its jobs.
        Returns as soon as the consumer is running; does not block on jobs.

        Raises:
            ValueError: ``concurrency`` is less than 1.
            QueueClosedError: the driver was closed.
        """
        ...

    async def consume_batches(
        self,
        queue_name: str,
        handler: BatchHandler,
        *,
        max_batch_size: int,
        max_wait_ms: int,
        concurrency: int = 1,
    ) -> Consumer:
        """Like ``consume``, but hand ``handler`` up to ``max_batch_size`` jobs at a time.

        A batch is handed over as soon as it is full, or ``max_wait_ms`` after its
        first job was taken, whichever comes first; it always has at least one job.
        At most ``concurrency`` batches are in flight at once. A job counts as done
        when the batch handler returns, unless the handler raises (see
        :data:`BatchHandler`). Exists so the actor layer can apply many events in
        one database transaction.

        Raises:
            ValueError: ``max_batch_size`` or ``concurrency`` is less than 1, or
                ``max_wait_ms`` is negative.
            QueueClosedError: the driver was closed.
        """
        ...

    async def close(self) -> None:
        """Stop every consumer of this driver instance (as ``Consumer.stop``), then release it.

        In-flight handlers finish first; jobs not yet delivered stay in the
        backend for other or later clients. Afterwards ``enqueue`` and ``consume``
        raise :class:`QueueClosedError`. Idempotent; blocks as ``Consumer.stop``.
        """
        ...
