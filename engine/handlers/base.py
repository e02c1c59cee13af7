"""The handler port: what a task type's code receives and what it may raise.

Handlers run at least once per attempt: a worker can die after a handler's
side effect and before its result is committed, and the task is then run
again. ``TaskContext.idempotency_key`` is stable across attempts so handlers
can pass it to the systems they call (an ``Idempotency-Key`` header, an email
``Message-ID``), which is how "runs no effect twice" reaches the outside world.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import field
from typing import Any

from statefleet.engine.record import record

__all__ = ["Emit", "Handler", "HandlerResult", "PermanentTaskError", "TaskContext"]


@record
class TaskContext:
    """One attempt of one task, as its handler sees it."""

    tenant_id: str
    instance_id: str
    task_id: str
    task_type: str
    name: str
    input: Any
    attempt: int
    max_attempts: int
    idempotency_key: str
    policy: Mapping[str, Any] | None = None
    timeout_ms: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@record
class Emit:
    """An event a handler asks to send into its own instance (e.g. an AI decision)."""

    type: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@record
class HandlerResult:
    """A handler's output plus events to emit, written with the task's success.

    Returning a plain value is the common case (it becomes the output); a
    ``HandlerResult`` lets a handler also emit events, which the runner writes
    to the outbox in the same transaction as the task's success: they are
    published with the completion event (emitted ones first), all or none.
    """

    output: Any
    emit: tuple[Emit, ...] = ()


class PermanentTaskError(Exception):
    """The task cannot succeed by retrying (bad input, a 4xx answer): fail it now."""


#: A handler returns the task's output (JSON data), which becomes the payload of
#: the task's ``completionEvent``; raising fails the attempt.
Handler = Callable[[TaskContext], Awaitable[Any]]
