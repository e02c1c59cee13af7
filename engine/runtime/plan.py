"""What a step writes: pure translation of interpreter steps into rows.

The runtime commits a step as rows in one transaction: the instance's new
checkpoint, one audit row per event, the tasks and timers its effects create,
the cancellations, and the outbox jobs announcing new work. Building those
rows is kept free of I/O so it can be tested, and so a batch of many
instances' steps turns into a handful of array-valued statements.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from statefleet.engine.handlers.builtin import MANUAL_TYPES
from statefleet.engine.interpreter import (
    CancelTask,
    CancelTimer,
    CreateTask,
    ScheduleTimer,
    Step,
)
from statefleet.engine.record import record
from statefleet.engine.store.db import new_uuid

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_MAX_ATTEMPTS",
    "AuditRow",
    "Cancellation",
    "InstancePlan",
    "TaskRow",
    "instance_status",
    "plan_effects",
]

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF: dict[str, Any] = {"type": "exponential", "delay": 1000}


@dataclass(slots=True)
class TaskRow:
    """A task or timer to insert; ``run_at`` or ``delay_ms`` says when it is due."""

    tenant_id: str
    id: uuid.UUID
    instance_id: uuid.UUID
    kind: str
    type: str
    name: str
    input: Any
    run_at: datetime | None
    delay_ms: int
    max_attempts: int
    backoff: dict[str, Any] | None
    timeout_ms: int | None
    policy: dict[str, Any] | None
    idempotency_key: str | None
    completion_event: str | None
    failure_event: str | None
    #: The spec's ``task.limits``: its key (the task type, or ``type:<key value>``),
    #: at most this many attempts running at once, at most this many starts a second.
    limit_key: str | None = None
    limit_concurrency: int | None = None
    limit_per_second: float | None = None

    @property
    def runs_by_itself(self) -> bool:
        """Manual (``HUMAN``) tasks get no job: someone completes them from outside."""
        return not (self.kind == "task" and self.type in MANUAL_TYPES)


@record
class Cancellation:
    tenant_id: str
    instance_id: uuid.UUID
    kind: str
    idempotency_key: str | None
    name: str | None


@record
class AuditRow:
    tenant_id: str
    instance_id: uuid.UUID
    seq: int
    event_id: str
    type: str
    payload: Any
    state_before: Any
    state_after: Any
    effects: list[dict[str, Any]]
    handled: bool
    error: str | None


@dataclass(slots=True)
class InstancePlan:
    """Everything one instance's steps in one batch will write."""

    tenant_id: str
    instance_id: uuid.UUID
    version: int
    snapshot: dict[str, Any]
    status: str
    output: Any
    error: str | None
    audit: list[AuditRow] = field(default_factory=list)
    tasks: list[TaskRow] = field(default_factory=list)
    cancellations: list[Cancellation] = field(default_factory=list)
    #: Only late events of a finished instance are recorded: its checkpoint, status and
    #: output stay as they are, and only its version moves (for the concurrency check).
    records_only: bool = False
    #: Set by an upgrade step (``upgrades.py``): the definition version the instance moves to.
    definition_id: uuid.UUID | None = None
    #: Upgrade items this batch handled: (upgrade id, outcome, verdict at the move).
    upgrade_marks: list[tuple[uuid.UUID, str, str | None]] = field(default_factory=list)


def instance_status(step: Step) -> str:
    """The instance status a step leaves: running, done, or failed (evaluation error)."""
    return {"active": "running", "done": "done", "error": "failed"}[step.status]


def _parse_instant(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def plan_effects(
    tenant_id: str, instance_id: uuid.UUID, step: Step, plan: InstancePlan, seq: int
) -> None:
    """Appends the rows for ``step``'s effects to ``plan``.

    Timers are tasks of kind ``timer`` whose type is the event they deliver; a
    timer's idempotency key includes the audit sequence number of the step that
    scheduled it, so re-entering a state schedules a new timer instead of
    colliding with the one its previous visit scheduled.
    """
    for index, effect in enumerate(step.effects):
        if isinstance(effect, CreateTask):
            backoff = effect.backoff or DEFAULT_BACKOFF
            run_at = _parse_instant(effect.run_at) if effect.run_at else None
            limits = effect.limits or {}
            plan.tasks.append(
                TaskRow(
                    tenant_id=tenant_id,
                    id=new_uuid(),
                    instance_id=instance_id,
                    kind="task",
                    type=effect.task_type,
                    name=effect.name,
                    input=effect.input,
                    run_at=run_at,
                    delay_ms=effect.delay_ms or 0,
                    max_attempts=effect.max_attempts or DEFAULT_MAX_ATTEMPTS,
                    backoff=backoff,
                    timeout_ms=effect.timeout_ms,
                    policy=effect.policy,
                    idempotency_key=effect.idempotency_key,
                    completion_event=effect.completion_event,
                    failure_event=effect.failure_event,
                    limit_key=limits.get("key"),
                    limit_concurrency=limits.get("concurrency"),
                    limit_per_second=limits.get("perSecond"),
                )
            )
        elif isinstance(effect, ScheduleTimer):
            plan.tasks.append(
                TaskRow(
                    tenant_id=tenant_id,
                    id=new_uuid(),
                    instance_id=instance_id,
                    kind="timer",
                    type=effect.event,
                    name=effect.event,
                    input=None,
                    run_at=None,
                    delay_ms=effect.delay_ms,
                    max_attempts=DEFAULT_MAX_ATTEMPTS,
                    backoff=DEFAULT_BACKOFF,
                    timeout_ms=None,
                    policy=None,
                    idempotency_key=f"timer-{seq}-{index}-{effect.event}",
                    completion_event=None,
                    failure_event=None,
                )
            )
        elif isinstance(effect, CancelTimer):
            _cancel(plan, Cancellation(tenant_id, instance_id, "timer", None, effect.event))
        elif isinstance(effect, CancelTask):
            _cancel(
                plan,
                Cancellation(tenant_id, instance_id, "task", effect.idempotency_key, effect.name),
            )


def _cancel(plan: InstancePlan, cancellation: Cancellation) -> None:
    """Cancels matching tasks planned earlier in this batch, and those already stored.

    The stored ones are cancelled before this batch's tasks are inserted, so a
    timer scheduled after its own cancellation (a state left and re-entered in
    one batch) survives, and one scheduled before it never reaches the table.
    """

    def matches(task: TaskRow) -> bool:
        if task.kind != cancellation.kind:
            return False
        if cancellation.idempotency_key is not None:
            return task.idempotency_key == cancellation.idempotency_key
        return task.name == cancellation.name

    plan.tasks = [task for task in plan.tasks if not matches(task)]
    plan.cancellations.append(cancellation)
