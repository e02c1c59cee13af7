"""``to_mermaid(spec, active=...)``: the states an instance is in, marked for the console.

The console draws an instance's diagram from the API's graph with its state value
as ``?active=``; the class lines added here are what it highlights (the browser test,
tests/e2e/test_console.py, checks that Mermaid draws them).
"""

from __future__ import annotations

from typing import Any

import pytest

from statefleet.engine.graph import ACTIVE_CLASS_DEF, to_mermaid
from statefleet.engine.spec import validate_spec

PARALLEL: dict[str, Any] = {
    "id": "job",
    "initial": "work",
    "states": {
        "work": {
            "type": "parallel",
            "states": {
                "upload": {"initial": "idle", "states": {"idle": {}, "sending": {}}},
                "state": {"initial": "a", "states": {"a": {}, "b": {}}},
            },
            "on": {"DONE": "note"},
        },
        # A word Mermaid reserves: its id is note_2 (engine/graph.py), not its key.
        "note": {"type": "final"},
    },
}


def active_lines(value: object) -> list[str]:
    diagram = to_mermaid(validate_spec(PARALLEL), active=value)
    plain = to_mermaid(validate_spec(PARALLEL))
    assert diagram.startswith(plain), "highlighting only adds lines at the end"
    return diagram[len(plain) :].splitlines()


def test_every_active_leaf_gets_the_class_by_its_mermaid_id() -> None:
    assert active_lines({"work": {"upload": "sending", "state": "b"}}) == [
        f"    classDef active {ACTIVE_CLASS_DEF}",
        "    class work__upload__sending,work__state__b active",
    ]
    assert active_lines("note") == [
        f"    classDef active {ACTIVE_CLASS_DEF}",
        "    class note_2 active",
    ]


def test_without_a_value_nothing_is_added() -> None:
    assert "classDef" not in to_mermaid(validate_spec(PARALLEL))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nowhere", "active: 'nowhere' is not a child of 'job'"),
        ("work", "active: 'work' is a compound state, not a leaf"),
        ({"work": {"upload": "lost"}}, "active.work.upload: 'lost' is not a child of 'upload'"),
        ({"note": "x"}, "active.note: 'note' is not a compound child of 'job'"),
        ({}, "active: a state value is a string or a non-empty object"),
        (3, "active: a state value is a string or a non-empty object"),
    ],
)
def test_a_value_that_is_not_this_machines_names_the_part(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        to_mermaid(validate_spec(PARALLEL), active=value)
