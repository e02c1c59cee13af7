"""The engine's knobs in one object, whatever hosts it (in-process or Ray actors).

Plain data, no environment: ``statefleet.config.Settings`` reads the variables once,
validates them and builds this; tests and benchmarks build it directly. Every value is
documented in ``docs/configuration.md`` ("Engine").
"""

from __future__ import annotations

import os
from dataclasses import field

from statefleet.engine.record import record
from statefleet.engine.runtime.admission import AdmissionSettings
from statefleet.engine.runtime.executor import ExecutorSettings
from statefleet.engine.runtime.shard import ShardSettings
from statefleet.engine.runtime.step_limits import StepLimits
from statefleet.engine.runtime.tasks import TaskRunnerSettings

__all__ = ["EngineSettings"]


@record
class EngineSettings:
    #: Instance shards; an instance belongs to shard ``blake2b(id) % shards``.
    shards: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: Task executor pools (task batches go round-robin).
    pools: int = 1
    #: Checkpoints one shard keeps in memory at most (LRU beyond).
    max_resident: int = 10_000
    #: A virtual actor idle this long is passivated.
    idle_ms: int = 60_000
    #: Orchestrator jobs per batch taken from the queue (split across the shards).
    event_batch_size: int = 1_000
    event_batch_wait_ms: int = 5
    #: Event batches in flight at once.
    event_concurrency: int = 4
    #: Events one shard commits per transaction at most.
    shard_commit_batch: int = 512
    #: Commits in flight per shard (on disjoint instances).
    shard_commit_concurrency: int = 2
    #: Task jobs per batch sent to one pool.
    task_batch_size: int = 200
    task_batch_wait_ms: int = 5
    #: Task batches in flight at once (across pools).
    task_concurrency: int = 8
    #: Attempts of one task type running at once, per pool.
    task_type_limit: int = 64
    #: Longest lease of a claimed attempt, renewed by a heartbeat while its handler runs
    #: (a dead pool's task is claimed again within about this long).
    task_default_lease_ms: int = 15_000
    task_lease_margin_ms: int = 5_000
    #: Tasks the engine has handed to its pools itself (claimed by the steps that
    #: created them: ``engine.py``, ``TaskClaim``) and not had back, at most; beyond
    #: it, new tasks go through the broker and are claimed by the pool that takes them.
    task_handover_limit: int = 5_000
    #: asyncpg connections per shard and per pool (each Ray actor opens its own).
    db_pool_size: int = 4
    #: The sweeper: period, grace before an unpublished outbox row is re-sent, and grace
    #: before a published event job that never reached its instance is re-sent.
    sweep_interval_ms: int = 5_000
    sweep_grace_ms: int = 10_000
    sweep_event_grace_ms: int = 60_000
    #: How often the scheduler looks for due schedules (docs/schedules.md).
    schedule_poll_ms: int = 1_000
    #: The admitter (``admission.py``): sleep after an empty pass, passes in flight per
    #: kind, and what one pass takes of held events and admits of held tasks.
    admission_poll_ms: int = 100
    admission_lanes: int = 4
    admission_event_batch: int = 500
    admission_task_batch: int = 200
    #: How often the engine loop stores its tally for processes that run no engine to
    #: sum (``tally_store.py``); it stores it once more when it stops.
    metrics_flush_ms: int = 5_000
    #: The budget of one step: microsteps, and CPU time in ms; a step over it fails
    #: its instance instead of holding the shard (``step_limits.py``).
    step_max_microsteps: int = 1_000
    step_time_budget_ms: int = 1_000
    #: Allocations between generation-0 garbage collections in every process that runs
    #: the engine (Python's default is 700; ``gc_tuning.py`` says why it is raised).
    gc_gen0_threshold: int = 50_000

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"engine setting {name} must be a positive integer, got {value!r}")

    def shard(self) -> ShardSettings:
        return ShardSettings(
            max_resident=self.max_resident,
            idle_ms=self.idle_ms,
            max_batch=self.shard_commit_batch,
            commit_concurrency=self.shard_commit_concurrency,
            step=self.step_limits(),
        )

    def admission(self) -> AdmissionSettings:
        return AdmissionSettings(
            poll_ms=self.admission_poll_ms,
            event_batch=self.admission_event_batch,
            task_batch=self.admission_task_batch,
            lanes=self.admission_lanes,
            lease_ms=self.task_default_lease_ms,
            lease_margin_ms=self.task_lease_margin_ms,
        )

    def step_limits(self) -> StepLimits:
        return StepLimits(
            max_microsteps=self.step_max_microsteps, time_budget_ms=self.step_time_budget_ms
        )

    def executor(self) -> ExecutorSettings:
        return ExecutorSettings(
            default_limit=self.task_type_limit,
            tasks=TaskRunnerSettings(
                default_lease_ms=self.task_default_lease_ms,
                lease_margin_ms=self.task_lease_margin_ms,
            ),
        )
