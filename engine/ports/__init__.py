"""Ports: the interfaces the engine needs from the outside world, with their obligations.

The engine declares them here and never imports their implementations;
``statefleet.drivers`` (queues) and, later, the stores implement them.
"""

from statefleet.engine.ports.queue import (
    EVENT_JOB,
    ORCHESTRATOR_QUEUE,
    QUEUE_NAMES,
    TASK_JOB,
    TASK_RUNNER_QUEUE,
    BatchHandler,
    Consumer,
    EventJobData,
    JobHandler,
    MalformedJobError,
    PartialBatchFailure,
    Queue,
    QueueClosedError,
    QueueJob,
    TaskJobData,
    event_job,
    parse_event_job,
    parse_job,
    parse_task_job,
    task_dedupe_key,
    task_job,
)

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
    "event_job",
    "parse_event_job",
    "parse_job",
    "parse_task_job",
    "task_dedupe_key",
    "task_job",
]
