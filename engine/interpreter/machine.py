"""The public face of the interpreter: a compiled, immutable machine.

``Machine.initial_state`` and ``Machine.transition`` are pure functions of
their arguments; a machine holds no per-instance state, so one compiled
machine serves every instance of a definition version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statefleet.engine.interpreter.actions import StepState
from statefleet.engine.interpreter.algorithm import (
    Configuration,
    config_from_value,
    initial_microstep,
    macrostep,
    value_of,
)
from statefleet.engine.interpreter.budget import Meter, StepBudget
from statefleet.engine.interpreter.nodes import Node, compile_machine
from statefleet.engine.interpreter.snapshot import Snapshot, Step
from statefleet.engine.interpreter.values import EvaluationError, copy_json
from statefleet.engine.spec.models import WorkflowSpec
from statefleet.engine.spec.validate import validate_spec

__all__ = ["INIT_EVENT", "Machine", "load_machine"]

#: The event the initial step runs under (XState's ``xstate.init``).
INIT_EVENT = "xstate.init"


def _normalise_event(event: Mapping[str, Any]) -> dict[str, Any]:
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("an event needs a non-empty string `type`")
    payload = event.get("payload")
    if payload is None:
        payload = {}
    return {"type": event_type, "payload": payload}


class Machine:
    """A validated, compiled spec. Immutable; share it across instances and threads."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        self.id = spec.id
        self.root, self.nodes = compile_machine(spec)
        self.nodes_by_id: dict[str, Node] = {n.id: n for n in self.nodes}
        self._has_always = any(n.always for n in self.nodes)
        initial: set[Node] = set()
        _initial_nodes(self.root, initial)
        self._initial_nodes = frozenset(initial)

    def initial_state(
        self, input: Mapping[str, Any] | None = None, budget: StepBudget | None = None
    ) -> Step:
        """Enters the initial configuration; ``input`` is merged over the spec's context.

        The merge is shallow, as the contract says: an input key replaces the
        whole top-level value of the same key. ``budget`` bounds the work of the
        step (see ``budget.py``); without one only the default microstep limit
        applies and the step is a pure function of its arguments.
        """
        context = copy_json(self.spec.context)
        if input:
            context.update(input)
        state = StepState(context, Meter(budget))
        event = {"type": INIT_EVENT, "payload": {}}
        config: Configuration = {}
        try:
            initial_microstep(self._initial_nodes, config, state, event)
            macrostep(self.root, config, state, event, initial=True, has_always=self._has_always)
        except EvaluationError as exc:
            failed = Snapshot(value=None, context=context, status="error", error=str(exc))
            return Step(snapshot=failed, effects=(), handled=False)
        return self._finish(config, state, handled=True)

    def transition(
        self,
        snapshot: Snapshot | Mapping[str, Any],
        event: Mapping[str, Any],
        budget: StepBudget | None = None,
    ) -> Step:
        """Applies one external event to ``snapshot``.

        An event on a finished or failed snapshot is an unhandled no-op. An
        evaluation error, or a step over its ``budget`` (``BudgetExceeded``),
        yields a step with ``status == "error"`` and no effects, keeping the
        value and context the step started from.

        Raises:
            ValueError: the event has no string ``type``.
        """
        if not isinstance(snapshot, Snapshot):
            snapshot = Snapshot.from_dict(snapshot)
        ev = _normalise_event(event)
        if snapshot.status != "active":
            return Step(snapshot=snapshot, effects=(), handled=False)
        state = StepState(snapshot.context, Meter(budget))
        try:
            config = config_from_value(self.root, snapshot.value)
            handled = macrostep(self.root, config, state, ev, has_always=self._has_always)
        except EvaluationError as exc:
            failed = Snapshot(
                value=snapshot.value, context=snapshot.context, status="error", error=str(exc)
            )
            return Step(snapshot=failed, effects=(), handled=False)
        return self._finish(config, state, handled=handled)

    def next_events(self, value: Any) -> tuple[str, ...]:
        """The event types the active states of ``value`` have transitions for, sorted.

        XState's ``getNextEvents``: what an instance in that state can take, guards
        aside (a guarded transition may still refuse an event). It includes the engine's
        own events (``xstate.after.*`` timers, ``xstate.done.*``) and wildcard
        descriptors as written (``*``, ``order.*``). Tools use it to tell people what
        a waiting instance waits for.

        Raises:
            EvaluationError: ``value`` names a state this machine does not have.
        """
        config = config_from_value(self.root, value)
        return tuple(sorted({event for node in config for event in node.transitions}))

    def _finish(self, config: Configuration, state: StepState, handled: bool) -> Step:
        done = state.status == "done"
        snapshot = Snapshot(
            value=value_of(self.root, config),
            context=state.context,
            status="done" if done else "active",
            output=state.output if done else None,
        )
        return Step(snapshot=snapshot, effects=tuple(state.effects), handled=handled)

    def __repr__(self) -> str:
        return f"<Machine {self.id} ({len(self.nodes)} states)>"


def _initial_nodes(node: Node, out: set[Node]) -> None:
    """XState's ``getInitialStateNodes``: the root and its default descendants."""
    out.add(node)
    if node.kind == "compound":
        assert node.initial is not None
        _initial_nodes(node.initial, out)
    elif node.kind == "parallel":
        for child in node.children:
            _initial_nodes(child, out)


def load_machine(spec: Any) -> Machine:
    """Validates ``spec`` (JSON data or a WorkflowSpec) and compiles it.

    Raises:
        SpecValidationError: listing every problem with its JSON path.
    """
    if not isinstance(spec, WorkflowSpec):
        spec = validate_spec(spec)
    return Machine(spec)
