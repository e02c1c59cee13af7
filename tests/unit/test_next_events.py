"""``Machine.next_events``: what an instance in a given state can take (XState's getNextEvents)."""

from __future__ import annotations

import pytest

from statefleet.engine.interpreter import load_machine
from statefleet.engine.interpreter.values import EvaluationError

SPEC = {
    "id": "order",
    "initial": "open",
    "on": {"CANCEL": ".cancelled"},
    "states": {
        "open": {
            "type": "parallel",
            "states": {
                "payment": {
                    "initial": "waiting",
                    "states": {
                        "waiting": {"on": {"PAID": "paid"}, "after": {"1000": "paid"}},
                        "paid": {"type": "final"},
                    },
                },
                "shipping": {
                    "initial": "packing",
                    "states": {
                        "packing": {"on": {"PACKED": "sent", "note.*": "packing"}},
                        "sent": {"type": "final"},
                    },
                },
            },
        },
        "cancelled": {"type": "final"},
    },
}


def test_every_active_state_and_its_ancestors_count() -> None:
    machine = load_machine(SPEC)
    value = machine.initial_state().snapshot.value
    assert machine.next_events(value) == (
        "CANCEL",
        "PACKED",
        "PAID",
        "note.*",
        "xstate.after.1000.order.open.payment.waiting",
    )


def test_states_that_are_no_longer_active_do_not_count() -> None:
    machine = load_machine(SPEC)
    value = {"open": {"payment": "paid", "shipping": "sent"}}
    assert machine.next_events(value) == ("CANCEL",)
    assert machine.next_events("cancelled") == ("CANCEL",)


def test_a_value_of_another_machine_is_refused() -> None:
    with pytest.raises(EvaluationError):
        load_machine(SPEC).next_events("nowhere")
