"""Compiled actions and the mutable scratchpad one step executes them on.

Actions run in XState v5 order and take effect immediately: an ``assign``
changes the context seen by the next action; a ``raise`` queues an internal
event; ``createTask``/``cancelTask`` and timers append effects. Nothing here
performs I/O — effects are data for the runtime.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from typing import Any

from statefleet.engine.cel import CelEvaluationError, Expression
from statefleet.engine.interpreter.budget import Meter
from statefleet.engine.interpreter.effects import (
    CancelTask,
    CancelTimer,
    CreateTask,
    Effect,
    ScheduleTimer,
)
from statefleet.engine.interpreter.values import EvaluationError, Value, set_path
from statefleet.engine.spec.durations import parse_delay_ms

__all__ = [
    "Action",
    "Assign",
    "CancelTaskAction",
    "CancelTimerAction",
    "CreateTaskAction",
    "RaiseAction",
    "ScheduleTimerAction",
    "StepState",
    "TaskLimits",
]


class StepState:
    """What one macrostep accumulates: context, effects, internal events, completion.

    ``meter`` counts the step's work against its budget (see ``budget.py``).
    """

    __slots__ = ("context", "effects", "meter", "output", "queue", "status")

    def __init__(self, context: dict[str, Any], meter: Meter | None = None) -> None:
        self.context = context
        self.meter = meter or Meter()
        self.effects: list[Effect] = []
        self.queue: deque[dict[str, Any]] = deque()
        self.status = "active"
        self.output: Any = None

    def variables(self, event: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        return {"context": self.context, "event": event, "params": params}


class Assign:
    """``assign``: one ``path``/``value`` or several ``assignments``.

    All values of one action are evaluated against the context as it was
    before the action, then applied in document order (contract point 5).
    """

    __slots__ = ("pairs", "params", "where")

    def __init__(
        self, pairs: tuple[tuple[tuple[str, ...], Value], ...], params: dict[str, Any], where: str
    ) -> None:
        self.pairs = pairs
        self.params = params
        self.where = where

    def run(self, state: StepState, event: Mapping[str, Any]) -> None:
        variables = state.variables(event, self.params)
        resolved = [(path, value.resolve(variables, self.where)) for path, value in self.pairs]
        context = state.context
        for path, value in resolved:
            context = set_path(context, path, value)
        state.context = context


def _as_ms(value: Any, where: str, field: str) -> int:
    """Turns a resolved delay (ms or ISO-8601 duration) into milliseconds."""
    try:
        return parse_delay_ms(value)
    except (ValueError, TypeError) as exc:
        raise EvaluationError(f"{where}: `{field}` is not a delay: {exc}") from None


def _as_str(value: Any, where: str, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise EvaluationError(f"{where}: `{field}` must be a string, got {type(value).__name__}")
    return str(value)


class TaskLimits:
    """A task's compiled ``limits``: its numbers, and the CEL of its ``key`` if it has one.

    The resolved key is the task type alone, or ``TYPE:<value>``: a string value
    as it is, any other value as its JSON text (keys sorted, so equal maps give
    equal keys). The runtime stores it with the task; the engine's admitter
    counts running work per key.
    """

    __slots__ = ("concurrency", "key", "per_second")

    def __init__(
        self, concurrency: int | None, per_second: float | None, key: Expression | None
    ) -> None:
        self.concurrency = concurrency
        self.per_second = per_second
        self.key = key

    def resolve(
        self, task_type: str, variables: Mapping[str, Any], task_input: Any, where: str
    ) -> dict[str, Any]:
        """The effect's ``limits``; ``task_input`` is the task's resolved input.

        Raises:
            EvaluationError: the key expression failed (the step fails, as for any CEL error).
        """
        key = task_type
        if self.key is not None:
            try:
                value = self.key.evaluate({**variables, "input": task_input})
                # The standard library, not orjson: the interpreter imports no third-party
                # code but CEL (tests/unit/test_architecture.py). Compact, keys sorted.
                text = (
                    value
                    if isinstance(value, str)
                    else json.dumps(
                        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                    )
                )
            except (CelEvaluationError, ValueError) as exc:
                raise EvaluationError(
                    f"{where}: `limits.key` expression `{self.key.source}` failed: {exc}"
                ) from None
            key = f"{task_type}:{text}"
        limits: dict[str, Any] = {"key": key}
        if self.concurrency is not None:
            limits["concurrency"] = self.concurrency
        if self.per_second is not None:
            limits["perSecond"] = self.per_second
        return limits


class CreateTaskAction:
    """``createTask``: resolves the task's value fields and emits a CreateTask effect."""

    __slots__ = (
        "backoff",
        "completion_event",
        "delay",
        "failure_event",
        "idempotency_key",
        "input",
        "limits",
        "max_attempts",
        "name",
        "params",
        "policy",
        "run_at",
        "task_type",
        "timeout_ms",
        "where",
    )

    def __init__(
        self,
        *,
        task_type: str,
        name: str,
        input: Value,
        run_at: Value | None,
        delay: Value | None,
        idempotency_key: Value | None,
        completion_event: str | None,
        failure_event: str | None,
        max_attempts: int | None,
        backoff: dict[str, Any] | None,
        timeout_ms: int | None,
        policy: dict[str, Any] | None,
        params: dict[str, Any],
        where: str,
        limits: TaskLimits | None = None,
    ) -> None:
        self.task_type = task_type
        self.name = name
        self.input = input
        self.run_at = run_at
        self.delay = delay
        self.idempotency_key = idempotency_key
        self.completion_event = completion_event
        self.failure_event = failure_event
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout_ms = timeout_ms
        self.policy = policy
        self.params = params
        self.where = where
        self.limits = limits

    def run(self, state: StepState, event: Mapping[str, Any]) -> None:
        variables = state.variables(event, self.params)
        where = self.where
        run_at = None
        if self.run_at is not None:
            run_at = _as_str(self.run_at.resolve(variables, where), where, "runAt")
        delay_ms = None
        if self.delay is not None:
            delay_ms = _as_ms(self.delay.resolve(variables, where), where, "delay")
        key = None
        if self.idempotency_key is not None:
            key = _as_str(self.idempotency_key.resolve(variables, where), where, "idempotencyKey")
        task_input = self.input.resolve(variables, where)
        limits = None
        if self.limits is not None:
            limits = self.limits.resolve(self.task_type, variables, task_input, where)
        state.effects.append(
            CreateTask(
                task_type=self.task_type,
                name=self.name,
                input=task_input,
                run_at=run_at,
                delay_ms=delay_ms,
                idempotency_key=key,
                completion_event=self.completion_event,
                failure_event=self.failure_event,
                max_attempts=self.max_attempts,
                backoff=dict(self.backoff) if self.backoff is not None else None,
                timeout_ms=self.timeout_ms,
                policy=dict(self.policy) if self.policy is not None else None,
                limits=limits,
            )
        )


class CancelTaskAction:
    __slots__ = ("idempotency_key", "name", "params", "where")

    def __init__(
        self, idempotency_key: Value | None, name: str | None, params: dict[str, Any], where: str
    ) -> None:
        self.idempotency_key = idempotency_key
        self.name = name
        self.params = params
        self.where = where

    def run(self, state: StepState, event: Mapping[str, Any]) -> None:
        if self.idempotency_key is not None:
            raw = self.idempotency_key.resolve(state.variables(event, self.params), self.where)
            key = _as_str(raw, self.where, "idempotencyKey")
            state.effects.append(CancelTask(idempotency_key=key))
        else:
            state.effects.append(CancelTask(name=self.name))


class RaiseAction:
    """``raise``: an internal event, processed before the next external one."""

    __slots__ = ("event_type", "params", "payload", "where")

    def __init__(self, event_type: str, payload: Value, params: dict[str, Any], where: str) -> None:
        self.event_type = event_type
        self.payload = payload
        self.params = params
        self.where = where

    def run(self, state: StepState, event: Mapping[str, Any]) -> None:
        payload = self.payload.resolve(state.variables(event, self.params), self.where)
        state.queue.append({"type": self.event_type, "payload": payload})


class ScheduleTimerAction:
    """Entry side of an ``after`` transition (XState: a delayed ``raise``)."""

    __slots__ = ("effect",)

    def __init__(self, event_type: str, delay_ms: int) -> None:
        self.effect = ScheduleTimer(event=event_type, delay_ms=delay_ms)

    def run(self, state: StepState, event: Mapping[str, Any]) -> None:
        state.effects.append(self.effect)


class CancelTimerAction:
    """Exit side of an ``after`` transition (XState: ``cancel``)."""

    __slots__ = ("effect",)

    def __init__(self, event_type: str) -> None:
        self.effect = CancelTimer(event=event_type)

    def run(self, state: StepState, event: Mapping[str, Any]) -> None:
        state.effects.append(self.effect)


Action = (
    Assign
    | CreateTaskAction
    | CancelTaskAction
    | RaiseAction
    | ScheduleTimerAction
    | CancelTimerAction
)
