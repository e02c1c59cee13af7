"""The pure replay behind upgrades: state paths, verdicts, open work, the replay cache."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from statefleet.engine.interpreter import Machine, Snapshot, load_machine
from statefleet.engine.runtime.replay import (
    HistoryEntry,
    OpenWork,
    ReplayCache,
    judge,
    leaf_paths,
    map_value,
    plan_open_work,
)


def machine(states: dict[str, Any], context: dict[str, Any] | None = None) -> Machine:
    return load_machine({"id": "m", "initial": "a", "context": context or {}, "states": states})


def history(
    m: Machine, events: list[tuple[str, dict[str, Any]]]
) -> tuple[list[HistoryEntry], Snapshot]:
    """Runs ``events`` on ``m`` and records the audit log the runtime would."""
    step = m.initial_state({})
    entries = [HistoryEntry(0, "xstate.init", {}, step.snapshot.value, step.effects_as_dicts())]
    snapshot = step.snapshot
    for seq, (event_type, payload) in enumerate(events, 1):
        step = m.transition(snapshot, {"type": event_type, "payload": payload})
        entries.append(
            HistoryEntry(seq, event_type, payload, step.snapshot.value, step.effects_as_dicts())
        )
        snapshot = step.snapshot
    return entries, snapshot


def test_state_values_and_paths_round_trip_through_a_map() -> None:
    value = {"p": {"r1": "x", "r2": {"y": "z"}}}
    assert leaf_paths(value) == ["p.r1.x", "p.r2.y.z"]
    assert map_value(value, {}) is value
    assert map_value(value, {"p.r2.y": "p.r2.w"}) == {"p": {"r1": "x", "r2": {"w": "z"}}}
    assert map_value("review", {"review": "legal"}) == "legal"


def test_verdicts() -> None:
    a = machine(
        {"a": {"on": {"GO": {"target": "b"}}}, "b": {"on": {"GO": {"target": "c"}}}, "c": {}}
    )
    b_same = machine(
        {"a": {"on": {"GO": {"target": "b2"}}}, "b2": {"on": {"GO": {"target": "c"}}}, "c": {}}
    )
    entries, current = history(a, [("GO", {})])
    renamed = judge(b_same, entries, current, state_map={"b": "b2"})
    assert renamed.verdict == "compatible"
    assert renamed.target_value == "b2"
    assert judge(b_same, entries, current).verdict == "unmappable"

    b_other = machine({"a": {"on": {"GO": {"target": "c"}}}, "b": {}, "c": {}})
    diverged = judge(b_other, entries, current)
    assert diverged.verdict == "diverged"
    assert diverged.divergence is not None
    assert (diverged.divergence.seq, diverged.divergence.event) == (1, "GO")
    assert (diverged.divergence.expected, diverged.divergence.got) == ("b", "c")

    counted = machine(
        {
            "a": {
                "on": {
                    "GO": {
                        "target": "b",
                        "actions": [{"type": "assign", "path": "n", "value": 1}],
                    }
                }
            },
            "b": {},
        },
        {"n": 0},
    )
    context = judge(counted, entries, current)
    assert context.verdict == "diverged"
    assert context.divergence is not None
    assert context.divergence.reason == "context"

    guarded = load_machine(
        {
            "id": "m",
            "initial": "a",
            "guards": {"big": "context.limit > 1"},
            "states": {"a": {"on": {"GO": {"target": "b", "guard": "big"}}}, "b": {}, "c": {}},
        }
    )
    failing = judge(guarded, entries, current)
    assert failing.verdict == "error"
    assert failing.error_seq == 1
    # The field it lacks, given as a default: the guard holds, and the moved instance's
    # context gets the same field, so the contexts agree.
    defaulted = judge(guarded, entries, current, context_defaults={"limit": 2})
    assert defaulted.verdict == "compatible"
    assert defaulted.target_context == {"limit": 2}


def test_the_cache_gives_the_answer_a_replay_gives() -> None:
    a = machine(
        {"a": {"on": {"GO": {"target": "b"}}}, "b": {"on": {"GO": {"target": "c"}}}, "c": {}}
    )
    b = machine({"a": {"on": {"GO": {"target": "c"}}}, "b": {}, "c": {}})
    cache = ReplayCache()
    for events in ([("GO", {})], [("GO", {})], [], [("GO", {"x": 1})]):
        entries, current = history(a, events)
        assert judge(b, entries, current, cache=cache) == judge(b, entries, current)
    # The second [GO] in full; the other two share its xstate.init prefix.
    assert cache.hits == 3


def test_open_tasks_and_timers_are_kept_cancelled_or_rearmed() -> None:
    task = {
        "type": "createTask",
        "task": {"type": "HUMAN", "name": "t", "input": {}, "completionEvent": "DONE"},
    }
    a = machine(
        {
            "a": {"on": {"GO": {"target": "w", "actions": [task]}}},
            "w": {"after": {"1000": {"target": "a"}}, "on": {"X": {"target": "gone"}}},
            "gone": {},
        }
    )
    b = machine(
        {
            "a": {"on": {"GO": {"target": "w"}}},
            "w": {"after": {"5000": {"target": "a"}}},
            "gone2": {},
        }
    )
    entries, _ = history(a, [("GO", {})])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    work = [
        OpenWork(uuid.uuid4(), "task", "t", None, now),
        OpenWork(uuid.uuid4(), "timer", "xstate.after.1000.m.w", None, now),
    ]
    moves = plan_open_work(a, b, entries, work)
    assert [m.action for m in moves] == ["kept", "rearmed"]
    assert moves[1].event == "xstate.after.5000.m.w"
    assert moves[1].run_at == now + timedelta(milliseconds=5000)
    # w merged into a state A already has: its task and timer go.
    merged = machine({"a": {"on": {"GO": {"target": "a"}}}, "gone": {}})
    moves = plan_open_work(a, merged, entries, work, state_map={"w": "a"})
    assert [m.action for m in moves] == ["cancelled", "cancelled"]
    assert moves[0].effects() == [{"type": "cancelTask", "name": "t"}]
