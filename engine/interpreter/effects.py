"""Effects: what a step asks the outside world to do, as frozen data.

The interpreter never performs I/O; it returns these in the order XState would
have executed the actions, and the runtime persists and executes them.
``as_dict`` gives the wire/JSON shape (camelCase, as in the contract) that
``simulate`` prints and the audit log stores.
"""

from __future__ import annotations

from typing import Any

from statefleet.engine.record import record

__all__ = ["CancelTask", "CancelTimer", "CreateTask", "Effect", "ScheduleTimer"]


@record
class CreateTask:
    """Schedule a task. Value fields are already resolved against the context."""

    task_type: str
    name: str
    input: Any
    run_at: str | None = None
    delay_ms: int | None = None
    idempotency_key: str | None = None
    completion_event: str | None = None
    failure_event: str | None = None
    max_attempts: int | None = None
    backoff: dict[str, Any] | None = None
    timeout_ms: int | None = None
    policy: dict[str, Any] | None = None
    #: The spec's ``task.limits`` with its key resolved: ``{"key", "concurrency"?,
    #: "perSecond"?}``; absent (so the effect's JSON is unchanged) when none is declared.
    limits: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        task: dict[str, Any] = {"type": self.task_type, "name": self.name, "input": self.input}
        optional = (
            ("runAt", self.run_at),
            ("delay", self.delay_ms),
            ("idempotencyKey", self.idempotency_key),
            ("completionEvent", self.completion_event),
            ("failureEvent", self.failure_event),
            ("timeout", self.timeout_ms),
            ("policy", self.policy),
            ("limits", self.limits),
        )
        for key, value in optional:
            if value is not None:
                task[key] = value
        if self.max_attempts is not None or self.backoff is not None:
            retry: dict[str, Any] = {}
            if self.max_attempts is not None:
                retry["maxAttempts"] = self.max_attempts
            if self.backoff is not None:
                retry["backoff"] = self.backoff
            task["retry"] = retry
        return {"type": "createTask", "task": task}


@record
class CancelTask:
    """Cancel this instance's pending task(s) with the given idempotency key or name."""

    idempotency_key: str | None = None
    name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.idempotency_key is not None:
            return {"type": "cancelTask", "idempotencyKey": self.idempotency_key}
        return {"type": "cancelTask", "name": self.name}


@record
class ScheduleTimer:
    """Deliver ``{"type": event}`` to this instance after ``delay_ms`` (an ``after`` entry)."""

    event: str
    delay_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {"type": "scheduleTimer", "event": self.event, "delay": self.delay_ms}


@record
class CancelTimer:
    """Cancel the pending timer whose event type is ``event`` (its state was exited)."""

    event: str

    def as_dict(self) -> dict[str, Any]:
        return {"type": "cancelTimer", "event": self.event}


Effect = CreateTask | CancelTask | ScheduleTimer | CancelTimer
