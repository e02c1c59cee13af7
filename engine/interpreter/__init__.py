"""The statechart interpreter: a pure ``(snapshot, event) -> (snapshot, effects)``.

Semantics are XState v5's (``packages/core/src/stateUtils.ts``), made explicit
by the contract in ``docs/spec.md``. Nothing here awaits, reads a clock, or
draws a random number: time reaches the interpreter only as timer events.
"""

from statefleet.engine.interpreter.effects import (
    CancelTask,
    CancelTimer,
    CreateTask,
    Effect,
    ScheduleTimer,
)
from statefleet.engine.interpreter.machine import Machine, load_machine
from statefleet.engine.interpreter.snapshot import Event, Snapshot, Status, Step, make_event

__all__ = [
    "CancelTask",
    "CancelTimer",
    "CreateTask",
    "Effect",
    "Event",
    "Machine",
    "ScheduleTimer",
    "Snapshot",
    "Status",
    "Step",
    "load_machine",
    "make_event",
]
