"""Differential tests: statefleet's interpreter against XState v5 on random specs.

The contract says that where it is silent, XState v5's behaviour is the
answer; this suite asks XState. A session generates ``STATEFLEET_DIFF_CASES``
(default 300) seeded cases, runs them all through one Node process, then runs
each on statefleet (restoring every step from its JSON checkpoint) and
compares value, context, status, output, the ordered effects and ``handled``
at every step. A mismatch fails with a shrunk, self-contained reproduction.

Reproduce one seed: ``STATEFLEET_DIFF_SEED=<seed> STATEFLEET_DIFF_CASES=1 pytest
tests/differential -k matches_xstate``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from oracle import (
    Mismatch,
    Outcome,
    XStateRunner,
    compare,
    describe_failure,
    format_repro,
    run_statefleet,
    shrink,
    strict_equal,
)
from specgen import GeneratedCase, generate_case
from translate import translate

CASES = int(os.environ.get("STATEFLEET_DIFF_CASES", "300"))
FIRST_SEED = int(os.environ.get("STATEFLEET_DIFF_SEED", "0"))
#: Shrinking costs up to 20 s per case; past this many failures, print unshrunk.
MAX_SHRUNK = int(os.environ.get("STATEFLEET_DIFF_SHRINK", "3"))

#: Deliberate divergences from XState, by seed: {seed: reason}. Keep it empty; an
#: entry is strict, so it fails once the divergence is gone.
KNOWN_DIVERGENCES: dict[int, str] = {}

CONFORMANCE_CASES = Path(__file__).resolve().parent.parent / "conformance" / "cases"

_shrunk = Counter[str]()


@pytest.fixture(scope="session")
def generated() -> list[GeneratedCase]:
    return [generate_case(FIRST_SEED + i) for i in range(CASES)]


@pytest.fixture(scope="session")
def xstate_results(
    xstate_runner: XStateRunner, generated: list[GeneratedCase]
) -> list[dict[str, Any]]:
    """All generated cases through XState in one Node process."""
    cases = [translate(c.spec, c.input).as_case(str(c.seed), c.events) for c in generated]
    return xstate_runner.run(cases)


@pytest.mark.parametrize("index", range(CASES), ids=lambda i: f"seed{FIRST_SEED + i}")
def test_matches_xstate(
    index: int,
    generated: list[GeneratedCase],
    xstate_results: list[dict[str, Any]],
    xstate_runner: XStateRunner,
    request: pytest.FixtureRequest,
) -> None:
    case, result = generated[index], xstate_results[index]
    if case.seed in KNOWN_DIVERGENCES:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_DIVERGENCES[case.seed], strict=True))
    assert not result.get("error"), f"XState rejected generated seed {case.seed}: {result['error']}"
    ours = run_statefleet(case.spec, case.input, result["events"])
    mismatch = compare(ours, result["steps"])
    if mismatch is None:
        return
    header = f"statefleet diverges from XState {xstate_runner.version} on seed {case.seed}"
    if _shrunk["count"] < MAX_SHRUNK:
        _shrunk["count"] += 1
        message = describe_failure(
            xstate_runner, case.spec, case.input, result["events"], mismatch, header
        )
    else:
        message = format_repro(case.spec, case.input, result["events"], mismatch, header)
    pytest.fail(message, pytrace=False)


def test_conformance_goldens_are_xstates_answers(xstate_runner: XStateRunner) -> None:
    """The committed ``source: xstate`` expectations still equal what XState answers.

    Catches a hand edit of a golden, and drift after an ``xstate`` upgrade
    (then rerun ``tests/conformance/make_golden.py`` and review the diff).
    """
    paths = sorted(CONFORMANCE_CASES.glob("*.json"))
    cases = [json.loads(path.read_text()) for path in paths]
    cases = [case for case in cases if case["source"] == "xstate"]
    assert cases, "no XState-sourced conformance cases found"
    batch = [
        translate(case["spec"], case.get("input"), case.get("js")).as_case(
            case["name"], case["events"]
        )
        for case in cases
    ]
    stale = [
        case["name"]
        for case, result in zip(cases, xstate_runner.run(batch), strict=True)
        if result.get("error")
        or result["steps"] != case["expected"]
        or case["xstate"] != xstate_runner.version
    ]
    assert not stale, f"goldens differ from XState {xstate_runner.version}: {stale}"


# --- the harness itself ---------------------------------------------------------------

HELLO: dict[str, Any] = {
    "id": "hello-workflow",
    "initial": "start",
    "context": {"greeted": False},
    "states": {
        "start": {
            "on": {
                "WORKFLOW_START": {
                    "target": "notify",
                    "actions": [
                        {
                            "type": "createTask",
                            "task": {
                                "type": "EMAIL",
                                "name": "send-hello",
                                "input": {"to": "user@example.com", "subject": "Hello"},
                                "completionEvent": "HELLO_SENT",
                            },
                        }
                    ],
                }
            }
        },
        "notify": {"after": {"PT1M": "done"}, "on": {"HELLO_SENT": {"target": "done"}}},
        "done": {"type": "final"},
    },
}


def test_oracle_runs_the_seed_fixture(xstate_runner: XStateRunner) -> None:
    """The runner's own answer for the hello workflow fixture, checked by hand."""
    events = [
        {"type": "WORKFLOW_START", "payload": {}},
        {"type": "NOPE", "payload": {}},
        {"type": "HELLO_SENT", "payload": {}},
        {"type": "HELLO_SENT", "payload": {}},
    ]
    [result] = xstate_runner.run([translate(HELLO).as_case("hello", events)])
    timer = "xstate.after.60000.hello-workflow.notify"
    task = {
        "type": "EMAIL",
        "name": "send-hello",
        "input": {"to": "user@example.com", "subject": "Hello"},
        "completionEvent": "HELLO_SENT",
    }
    context = {"greeted": False}
    assert result["steps"] == [
        {"value": "start", "context": context, "status": "active", "effects": [], "handled": True},
        {
            "value": "notify",
            "context": context,
            "status": "active",
            "effects": [
                {"type": "createTask", "task": task},
                {"type": "scheduleTimer", "event": timer, "delay": 60000},
            ],
            "handled": True,
        },
        {
            "value": "notify",
            "context": context,
            "status": "active",
            "effects": [],
            "handled": False,
        },
        {
            "value": "done",
            "context": context,
            "status": "done",
            "output": context,
            "effects": [{"type": "cancelTimer", "event": timer}],
            "handled": True,
        },
        {
            "value": "done",
            "context": context,
            "status": "done",
            "output": context,
            "effects": [],
            "handled": False,
        },
    ]


def test_oracle_resolves_pending_timers(xstate_runner: XStateRunner) -> None:
    """``{"$timer": i}`` becomes a timer that is pending at that point, not any timer."""
    spec = {
        "id": "t",
        "initial": "a",
        "states": {
            "a": {"after": {"1000": "b", "500": "b"}},
            "b": {"after": {"2000": "a"}},
        },
    }
    events = [{"$timer": 1}, {"$timer": 0}, {"$timer": 0}]
    [result] = xstate_runner.run([translate(spec).as_case("t", events)])
    assert [e["type"] for e in result["events"]] == [
        "xstate.after.1000.t.a",
        "xstate.after.2000.t.b",
        "xstate.after.500.t.a",
    ]
    assert [s["value"] for s in result["steps"]] == ["a", "b", "a", "b"]


def test_generator_is_seeded() -> None:
    assert generate_case(7) == generate_case(7)
    assert generate_case(7).spec != generate_case(8).spec


def test_generated_cases_exercise_the_features(
    generated: list[GeneratedCase], xstate_results: list[dict[str, Any]]
) -> None:
    """Guards against a generator that drifts into trivial specs."""
    text = Counter[str]()
    for case in generated:
        blob = repr(case.spec)
        for feature in (
            "'parallel'",
            "'always'",
            "'after'",
            "'onDone'",
            "'final'",
            "'*'",
            "'order.*'",
            "'reenter'",
            "'#",
            "'.s",
            "'cond'",
            "'and'",
            "'not'",
            "'params'",
            "'assignments'",
            "'raise'",
            "'cancelTask'",
            "'output'",
        ):
            text[feature] += feature in blob
    seen = Counter[str]()
    for result in xstate_results:
        for step in result["steps"]:
            seen[step["status"]] += 1
            seen["handled" if step["handled"] else "unhandled"] += 1
            seen.update(effect["type"] for effect in step["effects"])
        for event, step in zip(result["events"], result["steps"][1:], strict=False):
            if event["type"].startswith("xstate.after.") and step["handled"]:
                seen["timer fired"] += 1
    missing = [k for k, v in text.items() if v == 0]
    missing += [
        k
        for k in (
            "active",
            "done",
            "handled",
            "unhandled",
            "createTask",
            "cancelTask",
            "scheduleTimer",
            "cancelTimer",
            "timer fired",
        )
        if seen[k] == 0
    ]
    if CASES >= 100:
        assert not missing, f"generated cases never exercise: {missing}"


def test_compare_finds_the_first_difference() -> None:
    step: dict[str, Any] = {
        "value": "a",
        "context": {"n": 1, "f": True},
        "status": "active",
        "effects": [{"type": "cancelTimer", "event": "e"}],
        "handled": True,
    }
    assert compare(Outcome([step, step]), [step, step]) is None
    changed = {**step, "context": {"n": 1, "f": 1}}
    assert compare(Outcome([step, changed]), [step, step]) == Mismatch(
        "context", 1, changed["context"], step["context"]
    )
    reordered = {**step, "effects": [*step["effects"], {"type": "cancelTimer", "event": "f"}]}
    assert compare(Outcome([step]), [reordered]) is not None
    assert compare(Outcome([step]), [step, step]) is not None
    assert compare(Outcome([], "load: boom"), [step]) == Mismatch("load", 0, "load: boom", None)
    assert not strict_equal(2, 2.0)
    assert not strict_equal(True, 1)
    assert strict_equal({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})


def test_shrink_keeps_the_failure_and_drops_the_rest(
    xstate_runner: XStateRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake statefleet that fails to load any spec using ``reenter`` shrinks to one."""
    import oracle

    def fake(spec: Any, instance_input: Any, events: Any) -> Outcome:
        if "'reenter': True" in repr(spec):
            return Outcome([], "load: reenter unsupported")
        return Outcome([])

    monkeypatch.setattr(oracle, "run_statefleet", fake)
    case = next(
        c
        for c in (generate_case(seed) for seed in range(1000, 1100))
        if "'reenter': True" in repr(c.spec) and len(repr(c.spec)) > 2000
    )
    original = Mismatch("load", 0, "load: reenter unsupported", None)
    spec, events, mismatch = shrink(xstate_runner, case.spec, case.input, [], original, budget_s=20)
    assert mismatch.kind == "load"
    assert "'reenter': True" in repr(spec)
    assert len(repr(spec)) < len(repr(case.spec)) / 2
    assert events == []
