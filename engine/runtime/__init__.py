"""The durable runtime: instances, tasks and timers on Postgres, fed by a queue.

Pure planning (``plan``) turns interpreter steps into rows; the rest commits
them in batches (``instances``), hosts instances in shards (``shard``) and tasks in
executors (``executor``), publishes the outbox (``outbox``), sweeps up lost work
(``sweeper``), and runs it all in one loop (``engine``) over a backend that keeps the
shards and pools in this process (``local``) or elsewhere (``statefleet.actors``).
"""

from statefleet.engine.runtime.definitions import Definition, deploy_definition, spec_checksum
from statefleet.engine.runtime.engine import Engine
from statefleet.engine.runtime.instances import (
    START_EVENT,
    ApplyOutcome,
    InstanceRuntime,
    StartRequest,
    StartResult,
)
from statefleet.engine.runtime.local import LocalBackend
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
from statefleet.engine.runtime.settings import EngineSettings
from statefleet.engine.runtime.sweeper import Sweeper, SweepReport
from statefleet.engine.runtime.tasks import TaskRunner, TaskRunnerSettings

__all__ = [
    "START_EVENT",
    "ApplyOutcome",
    "Definition",
    "Engine",
    "EngineSettings",
    "InstanceNotFound",
    "InstanceNotRunning",
    "InstanceRuntime",
    "InstanceView",
    "LocalBackend",
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
    "WorkflowService",
    "deploy_definition",
    "spec_checksum",
]
