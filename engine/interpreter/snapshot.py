"""The persisted state of one instance, and the result of one step.

A snapshot is plain JSON data on purpose: the runtime checkpoints it to
Postgres after every step and the actor layer activates instances from it, so
``Snapshot.from_dict(orjson.loads(orjson.dumps(s.as_dict()))) == s`` must hold
for every snapshot the interpreter produces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any, Literal

from statefleet.engine.interpreter.effects import Effect
from statefleet.engine.record import record

__all__ = ["Event", "Snapshot", "Status", "Step", "make_event"]

Status = Literal["active", "done", "error"]

#: An event as the interpreter sees it: ``{"type": str, "payload": dict}``.
Event = Mapping[str, Any]


def make_event(event_type: str, payload: Any = None) -> dict[str, Any]:
    return {"type": event_type, "payload": {} if payload is None else payload}


@record
class Snapshot:
    """State value, context, and status of an instance; immutable by convention.

    ``value`` is XState's state value (``"a"``, ``{"p": {"r1": "x", "r2": "y"}}``).
    ``output`` is set when ``status == "done"``; ``error`` when ``status == "error"``.
    The interpreter never mutates ``context`` in place: a step that assigns
    builds new dicts along the assigned path and shares the rest.
    """

    value: Any
    context: dict[str, Any]
    status: Status = "active"
    output: Any = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"value": self.value, "context": self.context, "status": self.status}
        if self.status == "done":
            data["output"] = self.output
        if self.error is not None:
            data["error"] = self.error
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(
            value=data["value"],
            context=dict(data.get("context") or {}),
            status=data.get("status", "active"),
            output=data.get("output"),
            error=data.get("error"),
        )


@record
class Step:
    """What one event (or the start) did: the new snapshot and the ordered effects.

    ``handled`` is true when the event enabled at least one transition. A step
    that failed to evaluate (CEL error, non-bool guard, eventless loop) has
    ``status == "error"``, carries the message in ``error``, produces no effects,
    and keeps the value and context of the snapshot it started from.
    """

    snapshot: Snapshot
    effects: tuple[Effect, ...] = field(default=())
    handled: bool = True

    @property
    def status(self) -> Status:
        return self.snapshot.status

    @property
    def output(self) -> Any:
        return self.snapshot.output

    @property
    def error(self) -> str | None:
        return self.snapshot.error

    def effects_as_dicts(self) -> list[dict[str, Any]]:
        return [effect.as_dict() for effect in self.effects]
