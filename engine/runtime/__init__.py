"""The durable runtime: instances, tasks and timers on Postgres, fed by a queue.

Pure planning (``plan``) turns interpreter steps into rows; the rest commits
them in batches (``instances``), runs tasks (``tasks``), publishes the outbox
(``outbox``), sweeps up lost work (``sweeper``), and wires it all (``worker``).
"""

from statefleet.engine.runtime.definitions import Definition, deploy_definition, spec_checksum
from statefleet.engine.runtime.instances import (
    START_EVENT,
    ApplyOutcome,
    InstanceRuntime,
    StartRequest,
    StartResult,
)
from statefleet.engine.runtime.machines import MachineCache
from statefleet.engine.runtime.outbox import OutboxRow, Publisher
from statefleet.engine.runtime.service import (
    InstanceNotFound,
    InstanceNotRunning,
    InstanceView,
    TaskNotCompletable,
    UnknownDefinitionKey,
    WorkflowService,
)
from statefleet.engine.runtime.sweeper import Sweeper, SweepReport
from statefleet.engine.runtime.tasks import TaskRunner, TaskRunnerSettings
from statefleet.engine.runtime.worker import Worker, WorkerSettings

__all__ = [
    "START_EVENT",
    "ApplyOutcome",
    "Definition",
    "InstanceNotFound",
    "InstanceNotRunning",
    "InstanceRuntime",
    "InstanceView",
    "MachineCache",
    "OutboxRow",
    "Publisher",
    "StartRequest",
    "StartResult",
    "SweepReport",
    "Sweeper",
    "TaskNotCompletable",
    "TaskRunner",
    "TaskRunnerSettings",
    "UnknownDefinitionKey",
    "Worker",
    "WorkerSettings",
    "WorkflowService",
    "deploy_definition",
    "spec_checksum",
]
