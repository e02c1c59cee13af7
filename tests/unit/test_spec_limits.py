"""Spec limits at deploy (engine/spec/limits.py): each limit names the offending part."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from statefleet.engine.spec.limits import DEFAULT_SPEC_LIMITS, SpecLimits, check_limits

HELLO = json.loads(
    (pathlib.Path(__file__).parent.parent / "fixtures" / "hello-workflow.json").read_text()
)


def parallel(regions: int, **extra: Any) -> dict[str, Any]:
    states = {
        f"r{i}": {"initial": "a", "states": {"a": {"on": {"GO": "b"}}, "b": {}}}
        for i in range(regions)
    }
    return {"id": "p", "type": "parallel", "states": states, **extra}


def errors(spec: Any, **limits: int) -> dict[str, str]:
    return {e.path: e.message for e in check_limits(spec, SpecLimits(**limits))}


def test_the_hello_workflow_and_a_1000_region_spec_are_within_the_defaults() -> None:
    assert check_limits(HELLO) == []
    assert check_limits(parallel(1000), DEFAULT_SPEC_LIMITS) == []


def test_states_over_the_limit_name_the_first_state_beyond_it() -> None:
    found = errors(parallel(3), max_states=5)
    assert list(found) == ["states.r1.states.b"]  # r0, r0.a, r0.b, r1, r1.a, then r1.b
    assert "more than 5 states" in found["states.r1.states.b"]
    assert "(maxStates)" in found["states.r1.states.b"]


def test_regions_over_the_limit_name_the_parallel_state() -> None:
    spec = {"id": "m", "initial": "p", "states": {"p": parallel(4)}}
    assert list(errors(spec, max_regions=3)) == ["states.p"]
    assert "4 regions; the limit is 3 (maxRegions)" in errors(parallel(4), max_regions=3)[""]
    assert errors(parallel(3), max_regions=3) == {}


def test_depth_over_the_limit_names_the_first_state_too_deep() -> None:
    node: dict[str, Any] = {}
    for key in ("d", "c", "b", "a"):
        node = {"initial": next(iter(node.get("states", {"x": {}}))), "states": {key: node}}
    spec = {"id": "m", **node}
    found = errors(spec, max_depth=3)
    assert list(found) == ["states.a.states.b.states.c.states.d"]
    assert (
        "nested 4 deep; the limit is 3 (maxDepth)" in found["states.a.states.b.states.c.states.d"]
    )
    assert errors(spec, max_depth=4) == {}


def test_transitions_over_the_limit_name_the_first_transition_beyond_it() -> None:
    spec = {
        "id": "m",
        "initial": "a",
        "states": {
            "a": {"on": {"GO": ["b", "c"], "STOP": "c"}, "always": [{"target": "b"}]},
            "b": {"after": {"1000": "c"}},
            "c": {"type": "final"},
        },
    }
    assert errors(spec, max_transitions=5) == {}
    assert list(errors(spec, max_transitions=2)) == ["states.a.on.STOP"]
    assert list(errors(spec, max_transitions=1)) == ["states.a.on.GO[1]"]
    assert list(errors(spec, max_transitions=4)) == ['states.b.after["1000"]']


def test_long_expressions_are_found_in_guards_values_and_named_guards() -> None:
    long = "context.n + " * 10 + "1"
    cases = {
        "guards.big": {"guards": {"big": f"{long} > 0"}},
        "guards.big.expr": {"guards": {"big": {"expr": f"{long} > 0"}}},
    }
    for path, extra in cases.items():
        spec = {"id": "m", "initial": "a", "states": {"a": {}}, **extra}
        assert list(errors(spec, max_expression_length=20)) == [path]
    inline = {
        "id": "m",
        "initial": "a",
        "states": {
            "a": {
                "on": {
                    "GO": {
                        "guard": {"type": "not", "guard": {"expr": f"{long} > 0"}},
                        "actions": {"type": "assign", "path": "x", "value": {"$expr": "1"}},
                    }
                }
            }
        },
    }
    assert list(errors(inline, max_expression_length=20)) == ["states.a.on.GO.guard.guard.expr"]
    assign = {"type": "assign", "path": "x", "value": {"v": [{"$expr": long}]}}
    valued = {"id": "m", "initial": "a", "states": {"a": {"entry": assign}}}
    assert list(errors(valued, max_expression_length=20)) == ["states.a.entry.value.v[0].$expr"]
    limited = {"type": "createTask", "task": {"type": "AI", "name": "n", "limits": {"key": long}}}
    keyed = {"id": "m", "initial": "a", "states": {"a": {"entry": [limited]}}}
    assert list(errors(keyed, max_expression_length=20)) == ["states.a.entry[0].task.limits.key"]
    # The context is data, and `$expr` beside other keys is a literal (precise point 12).
    data = {"id": "m", "initial": "a", "context": {"note": {"$expr": long}}, "states": {"a": {}}}
    literal = {"type": "assign", "path": "x", "value": {"$expr": long, "other": 1}}
    assert errors(data, max_expression_length=20) == {}
    assert errors({**valued, "states": {"a": {"entry": literal}}}, max_expression_length=20) == {}


def test_spec_bytes_over_the_limit_is_reported_at_the_root() -> None:
    found = errors(HELLO, max_spec_bytes=100)
    assert list(found) == [""]
    assert "the limit is 100 (maxSpecBytes)" in found[""]


def test_overrides_by_wire_name_and_their_checks() -> None:
    limits = DEFAULT_SPEC_LIMITS.with_overrides({"maxStates": 7, "maxSpecBytes": 99})
    assert (limits.max_states, limits.max_spec_bytes) == (7, 99)
    assert limits.max_regions == DEFAULT_SPEC_LIMITS.max_regions
    assert set(limits.as_json()) == {
        "maxStates",
        "maxRegions",
        "maxDepth",
        "maxTransitions",
        "maxExpressionLength",
        "maxSpecBytes",
    }
    with pytest.raises(ValueError, match="unknown spec limit"):
        DEFAULT_SPEC_LIMITS.with_overrides({"maxWidgets": 1})
    for bad in (0, -1, True, "5", 1.5):
        with pytest.raises(ValueError, match="positive integer"):
            DEFAULT_SPEC_LIMITS.with_overrides({"maxStates": bad})
