"""Target resolution, checked against XState v5's ``resolveTarget`` rules."""

from __future__ import annotations

import re
from typing import Any

import pytest

from statefleet.engine.spec import StateIndex, WorkflowSpec, resolve_target
from statefleet.engine.spec.targets import to_state_path

SPEC: dict[str, Any] = {
    "id": "m",
    "initial": "a",
    "states": {
        "a": {},
        "b": {"initial": "c", "states": {"c": {}, "d": {"id": "dee"}}},
        "p": {
            "id": "par",
            "type": "parallel",
            "states": {
                "r1": {"initial": "x", "states": {"x": {}}},
                "r2": {"initial": "y", "states": {"y": {}}},
            },
        },
    },
}


@pytest.fixture(scope="module")
def index() -> StateIndex:
    return StateIndex.build(WorkflowSpec.model_validate(SPEC))


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        (("a",), "b", ("b",)),  # sibling
        (("a",), "b.d", ("b", "d")),  # sibling's child
        (("b",), ".c", ("b", "c")),  # own child
        (("b",), ".", ("b",)),  # "b." : an empty segment stops the walk
        ((), ".a", ("a",)),  # child of the root
        ((), ".b.c", ("b", "c")),
        (("a",), "#dee", ("b", "d")),  # custom id
        (("a",), "#par.r2.y", ("p", "r2", "y")),  # custom id, then children
        (("a",), "#m", ()),  # the root's id is the machine id
        (("a",), "#m.b.c", ("b", "c")),  # "#m.b.c": id "m", then children b, c
        (("b", "c"), "d", ("b", "d")),
        (("p", "r1", "x"), "#par", ("p",)),
        (("a",), "b.#dee", ("b", "d")),  # a "#" segment jumps to an id (getStateNode)
    ],
)
def test_resolves_like_xstate(
    index: StateIndex, source: tuple[str, ...], target: str, expected: tuple[str, ...]
) -> None:
    assert index.resolve(source, target) == expected


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ((), "a", "not valid from the root node, which has no siblings; did you mean '.a'?"),
        (("a",), "zz", "state 'm' has no child 'zz'; its children are: a, b, p"),
        (("a",), "a.x", "state 'm.a' has no child states (looking for 'x')"),
        (("b",), ".zz", "state 'm.b' has no child 'zz'; its children are: c, d"),
        (("a",), "#nope", "no state has the id 'nope'"),
        (("a",), "#dee.q", "state 'dee' has no child states (looking for 'q')"),
        (("a",), "", "an empty target names no state"),
        (("nope",), "a", "unknown source state"),
    ],
)
def test_reports_what_is_missing(
    index: StateIndex, source: tuple[str, ...], target: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        index.resolve(source, target)
    if target and source != ("nope",):
        assert str(info.value).startswith(f"target '{target}' does not resolve: ")


def test_ids_and_default_ids(index: StateIndex) -> None:
    assert index.ids[()] == "m"
    assert index.ids[("b", "c")] == "m.b.c"
    assert index.ids[("b", "d")] == "dee"
    assert index.by_id["dee"] == ("b", "d")
    assert index.by_id["m.b.c"] == ("b", "c")
    assert "m.b.d" not in index.by_id  # a node with a custom id registers only that id
    assert index.default_id(("b", "d")) == "m.b.d"
    assert index.children[("p",)] == ("r1", "r2")
    assert index.children[("a",)] == ()


def test_build_and_from_json_agree(index: StateIndex) -> None:
    assert StateIndex.from_json(SPEC) == index


def test_from_json_tolerates_malformed_nodes() -> None:
    raw = {"states": {"a": 5, "b": {"id": 3, "states": []}}}
    index = StateIndex.from_json(raw)
    assert index.machine_id == "(machine)"
    assert index.children == {(): ("a", "b"), ("a",): (), ("b",): ()}
    assert index.ids[("b",)] == "(machine).b"


def test_resolve_target_accepts_a_spec_or_an_index(index: StateIndex) -> None:
    spec = WorkflowSpec.model_validate(SPEC)
    assert resolve_target(spec, ("a",), "#dee") == ("b", "d")
    assert resolve_target(index, ("a",), "#dee") == ("b", "d")


def test_dotted_ids_need_escaping() -> None:
    spec = {"id": "m", "initial": "a", "states": {"a": {}, "b": {"id": "my.b"}}}
    index = StateIndex.from_json(spec)
    assert index.resolve(("a",), "#my\\.b") == ("b",)
    with pytest.raises(ValueError, match=r"write '#my\\\.b'"):
        index.resolve(("a",), "#my.b")


def test_later_duplicate_id_wins_like_xstates_id_map() -> None:
    spec = {"id": "m", "initial": "a", "states": {"a": {"id": "x"}, "b": {"id": "x"}}}
    assert StateIndex.from_json(spec).by_id["x"] == ("b",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", ["a"]),
        ("a.b.c", ["a", "b", "c"]),
        ("a\\.b.c", ["a.b", "c"]),
        ("a.", ["a", ""]),
        ("", [""]),
        ("a\\", ["a"]),
    ],
)
def test_to_state_path(text: str, expected: list[str]) -> None:
    assert to_state_path(text) == expected
