"""What a running instance waits for, in words: for ``start --wait`` when it times out.

A person whose instance did not finish wants to know what would move it on: an event
its current states take (from the definition's transitions), a ``HUMAN`` task someone
must complete, a timer that fires at a given time, or a task the engine is still
running. :func:`waiting_for` works out those lines from what the API already returns
(the instance, its definition's spec, its tasks), so it needs no route of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from statefleet.client import Instance, Task
from statefleet.engine.interpreter import load_machine
from statefleet.engine.interpreter.values import EvaluationError
from statefleet.engine.spec import SpecValidationError

__all__ = ["waiting_for"]

#: Task statuses that can still move the instance on.
OPEN = frozenset({"pending", "running"})
#: Events the engine makes itself (timers, done states): never sent by people.
ENGINE_EVENTS = "xstate."


def _events(spec: Mapping[str, Any] | None, value: Any) -> list[str]:
    if spec is None:
        return []
    try:
        names = load_machine(spec).next_events(value)
    except (SpecValidationError, EvaluationError):
        return []  # a spec this CLI cannot read: the tasks still say something
    return [name for name in names if not name.startswith(ENGINE_EVENTS)]


def _task_line(task: Task) -> str:
    if task.kind == "timer":  # its name is the engine's event (xstate.after.<ms>.<state>)
        when = task.run_at.isoformat() if task.run_at else "an unknown time"
        return f"a timer until {when}"
    name = f" {task.name}" if task.name else ""
    if task.type == "HUMAN":
        return (
            f"the HUMAN task{name} ({task.id}): statefleet tasks complete {task.id} --output JSON"
        )
    attempts = f"attempt {task.attempts}" + (
        f" of {task.max_attempts}" if task.max_attempts else ""
    )
    line = f"the {task.type} task{name} ({task.id}, {task.status}, {attempts})"
    if task.last_error:
        line += f"; last error: {task.last_error}"
    return line


def waiting_for(
    instance: Instance, spec: Mapping[str, Any] | None, tasks: Iterable[Task]
) -> list[str]:
    """One line per thing that would move ``instance`` on, tasks first, then events.

    Events that an open task sends when it finishes are left out of the event line:
    the task's own line says what the instance really waits for.
    """
    lines: list[str] = []
    awaited: set[str] = set()
    for task in tasks:
        if task.status not in OPEN:
            continue
        lines.append(_task_line(task))
        awaited.update(e for e in (task.completion_event, task.failure_event) if e)
    events = [e for e in _events(spec, instance.value) if e not in awaited]
    if events:
        lines.append(
            f"an event it can take: {', '.join(events)} (statefleet send {instance.id} TYPE)"
        )
    if not lines:
        lines.append("nothing it can take in its current state (no open task, no transition)")
    return lines
