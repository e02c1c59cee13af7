"""Properties of the interpreter that must hold for every spec and every event sequence.

- determinism: the same events give the same steps, byte for byte;
- persistence: a snapshot survives an orjson round trip unchanged, and a step
  taken from the restored snapshot equals the step taken from the original
  (the runtime restores from Postgres before every step);
- timer bookkeeping: after every step, the timers scheduled and not yet
  cancelled are exactly the ``after`` timers of the active states — none
  leaks when a state is left, none is lost when a state is kept.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from statefleet.engine.interpreter import Machine, Snapshot, Step, load_machine
from statefleet.engine.interpreter.algorithm import config_from_value

ROOT = pathlib.Path(__file__).resolve().parents[2]
ORDER = load_machine(json.loads((ROOT / "benchmarks" / "specs" / "order.json").read_text()))

TIMERS_SPEC: dict[str, Any] = {
    "id": "timers",
    "initial": "a",
    "context": {"n": 0},
    "states": {
        "a": {
            "after": {"1000": "b", "PT5S": {"target": "c"}},
            "on": {"STAY": "a", "RE": {"target": "a", "reenter": True}, "GO": "p"},
        },
        "b": {
            "after": {"250": {"actions": [{"type": "assign", "path": "n", "value": 1}]}},
            "on": {"GO": "p", "BACK": "a"},
        },
        "c": {
            "initial": "c1",
            "after": {"60000": "a"},
            "states": {"c1": {"after": {"10": "c2"}}, "c2": {"on": {"UP": "#timers.a"}}},
            "on": {"GO": "p"},
        },
        "p": {
            "type": "parallel",
            "on": {"BACK": "a"},
            "states": {
                "r1": {
                    "initial": "x",
                    "states": {"x": {"after": {"100": "y"}}, "y": {"on": {"AGAIN": "x"}}},
                },
                "r2": {
                    "initial": "u",
                    "states": {"u": {"after": {"200": "v"}}, "v": {"type": "final"}},
                },
            },
            "onDone": "end",
        },
        "end": {"type": "final"},
    },
}
TIMERS = load_machine(TIMERS_SPEC)

MACHINES = {"order": ORDER, "timers": TIMERS}
PLAIN_EVENTS = [
    "ADD",
    "PING",
    "CHECKOUT",
    "APPROVE",
    "REJECT",
    "SHIPPED",
    "STAY",
    "RE",
    "GO",
    "BACK",
    "UP",
    "AGAIN",
    "UNKNOWN",
]


def _timer_events(machine: Machine) -> list[str]:
    return [t for n in machine.nodes for t in n.transitions if t.startswith("xstate.after.")]


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(PLAIN_EVENTS + _timer_events(TIMERS)), st.floats(0, 100, allow_nan=False)
    ),
    max_size=25,
)


def _run(machine: Machine, events: list[tuple[str, float]]) -> list[Step]:
    steps = [machine.initial_state()]
    for event_type, price in events:
        steps.append(
            machine.transition(
                steps[-1].snapshot, {"type": event_type, "payload": {"price": price}}
            )
        )
    return steps


def _render(step: Step) -> bytes:
    return orjson.dumps([step.snapshot.as_dict(), step.effects_as_dicts(), step.handled])


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(MACHINES)), events=events_strategy)
def test_same_events_same_steps(name: str, events: list[tuple[str, float]]) -> None:
    machine = MACHINES[name]
    first = [_render(s) for s in _run(machine, events)]
    second = [_render(s) for s in _run(machine, events)]
    assert first == second


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(MACHINES)), events=events_strategy)
def test_snapshots_round_trip_and_restore_identically(
    name: str, events: list[tuple[str, float]]
) -> None:
    machine = MACHINES[name]
    snapshot = machine.initial_state().snapshot
    for event_type, price in events:
        restored = Snapshot.from_dict(orjson.loads(orjson.dumps(snapshot.as_dict())))
        assert restored == snapshot
        event = {"type": event_type, "payload": {"price": price}}
        from_memory = machine.transition(snapshot, event)
        from_disk = machine.transition(restored, event)
        assert _render(from_memory) == _render(from_disk)
        snapshot = from_memory.snapshot


class TimerBookkeeping(RuleBasedStateMachine):
    """Pending timers always equal the ``after`` timers of the active states."""

    def __init__(self) -> None:
        super().__init__()
        self.machine = TIMERS
        self.pending: set[str] = set()
        # A fired timer still gets its cancelTimer when its state is left (XState's
        # cancel of a delivered event is a no-op); the runtime must treat it so.
        self.fired: set[str] = set()
        step = self.machine.initial_state()
        self._apply(step)
        self.snapshot = step.snapshot

    def _apply(self, step: Step) -> None:
        for effect in step.effects_as_dicts():
            if effect["type"] == "scheduleTimer":
                assert effect["event"] not in self.pending | self.fired, (
                    f"scheduled twice: {effect}"
                )
                self.pending.add(effect["event"])
            elif effect["type"] == "cancelTimer":
                assert effect["event"] in self.pending | self.fired, f"never scheduled: {effect}"
                self.pending.discard(effect["event"])
                self.fired.discard(effect["event"])

    @rule(event_type=st.sampled_from(PLAIN_EVENTS))
    def send(self, event_type: str) -> None:
        step = self.machine.transition(self.snapshot, {"type": event_type})
        self._apply(step)
        self.snapshot = step.snapshot

    @rule(data=st.data())
    def fire_a_pending_timer(self, data: st.DataObject) -> None:
        if not self.pending:
            return
        event_type = data.draw(st.sampled_from(sorted(self.pending)))
        self.pending.discard(event_type)
        self.fired.add(event_type)
        step = self.machine.transition(self.snapshot, {"type": event_type})
        assert step.handled, (
            f"a pending timer {event_type} was not handled in {self.snapshot.value}"
        )
        self._apply(step)
        self.snapshot = step.snapshot

    @invariant()
    def pending_timers_match_active_states(self) -> None:
        if self.snapshot.status != "active":
            assert self.pending | self.fired == set()
            return
        config = config_from_value(self.machine.root, self.snapshot.value)
        expected = {t for node in config for t in node.transitions if t.startswith("xstate.after.")}
        assert self.pending | self.fired == expected


TimerBookkeeping.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
test_timer_bookkeeping = TimerBookkeeping.TestCase
