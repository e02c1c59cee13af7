"""Conformance: statefleet's interpreter against the contract, one data file per point.

Each ``cases/*.json`` names the contract row or precise point it pins, a spec,
an optional instance input, concrete events, and the expected step list (step 0
is the initial state). ``"source": "xstate"`` cases were produced by XState v5
through ``make_golden.py`` and checked by hand; ``"source": "hand"`` cases cover
what XState cannot express (CEL int/double, evaluation errors). No Node is
needed here: the tests run on the committed expectations.

Every step is taken from a snapshot restored from its JSON checkpoint, as the
runtime does, so a value that only survives in memory fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from statefleet.engine.interpreter import Snapshot, load_machine

CASES_DIR = Path(__file__).resolve().parent / "cases"
CASE_PATHS = sorted(CASES_DIR.glob("*.json"))
COMPARED = ("value", "context", "status", "output", "effects", "handled")

#: Deliberate divergences from a case: {case name: reason}. Strict: an entry fails
#: once statefleet conforms. Keep it empty unless the contract itself is amended.
KNOWN_DIVERGENCES: dict[str, str] = {}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _step(step: Any) -> dict[str, Any]:
    data = dict(step.snapshot.as_dict())
    data["effects"] = step.effects_as_dicts()
    data["handled"] = step.handled
    return orjson.loads(orjson.dumps(data))  # type: ignore[no-any-return]


def run_case(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Statefleet's steps for a case, restoring each step from its JSON checkpoint."""
    machine = load_machine(case["spec"])
    step = machine.initial_state(case.get("input"))
    steps = [_step(step)]
    for event in case["events"]:
        if steps[-1]["status"] == "error":
            break  # precise point 10: no further events are applied
        persisted = orjson.loads(orjson.dumps(step.snapshot.as_dict()))
        step = machine.transition(Snapshot.from_dict(persisted), event)
        steps.append(_step(step))
    return steps


def strict_equal(a: Any, b: Any) -> bool:
    """JSON equality that tells ``true`` from ``1`` and ``2`` from ``2.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def first_difference(
    actual: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> tuple[int, str, Any, Any] | None:
    """(step, field, ours, expected) of the first disagreement, or None."""
    for index, (mine, want) in enumerate(zip(actual, expected, strict=False)):
        for key in COMPARED:
            if key == "output" and want["status"] != "done":
                continue
            if not strict_equal(mine.get(key), want.get(key)):
                return index, key, mine.get(key), want.get(key)
        if want["status"] == "error" and not mine.get("error"):
            return index, "error", mine.get("error"), "a message"
    if len(actual) != len(expected):
        return min(len(actual), len(expected)), "number of steps", len(actual), len(expected)
    return None


@pytest.mark.parametrize("path", CASE_PATHS, ids=lambda p: p.stem)
def test_case(path: Path, request: pytest.FixtureRequest) -> None:
    case = _load(path)
    if case["name"] in KNOWN_DIVERGENCES:
        reason = KNOWN_DIVERGENCES[case["name"]]
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    actual = run_case(case)
    difference = first_difference(actual, case["expected"])
    if difference is not None:
        index, key, ours, want = difference
        event = "initial state" if index == 0 else f"event {case['events'][index - 1]}"
        pytest.fail(
            f"{case['name']} ({case['contract']})\n"
            f"step {index} ({event}), {key}:\n"
            f"  statefleet: {json.dumps(ours, sort_keys=True)}\n"
            f"  expected:   {json.dumps(want, sort_keys=True)}",
            pytrace=False,
        )


@pytest.mark.parametrize("path", CASE_PATHS, ids=lambda p: p.stem)
def test_case_file_is_well_formed(path: Path) -> None:
    """A case names its contract point, its source, and one expected step per event."""
    case = _load(path)
    assert case["name"] == path.stem
    assert case["contract"].strip()
    assert case["source"] in ("xstate", "hand")
    if case["source"] == "xstate":
        assert case.get("xstate"), "an XState golden records the XState version"
    for event in case["events"]:
        assert set(event) == {"type", "payload"}, f"events are concrete: {event}"
    expected = case["expected"]
    assert expected, "step 0 (the initial state) is always expected"
    stopped = next((i for i, s in enumerate(expected) if s["status"] == "error"), None)
    if stopped is None:
        assert len(expected) == len(case["events"]) + 1
    else:
        assert len(expected) == stopped + 1, "no step follows an error"
    for step in expected:
        assert {"value", "context", "status", "effects", "handled"} <= set(step)
        assert ("output" in step) == (step["status"] == "done")


def test_known_divergences_name_real_cases() -> None:
    names = {path.stem for path in CASE_PATHS}
    assert set(KNOWN_DIVERGENCES) <= names
    assert len(CASE_PATHS) >= 40


def test_first_difference_can_fail() -> None:
    """The comparison is strict: a changed type, field or step count is reported."""
    step = {"value": "a", "context": {"n": 1}, "status": "active", "effects": [], "handled": True}
    assert first_difference([step], [step]) is None
    assert first_difference([{**step, "context": {"n": 1.0}}], [step]) == (
        0,
        "context",
        {"n": 1.0},
        {"n": 1},
    )
    assert first_difference([step, step], [step]) is not None
    error = {**step, "status": "error"}
    assert first_difference([error], [error]) == (0, "error", None, "a message")
