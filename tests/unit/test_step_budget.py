"""The budget of one step (engine/interpreter/budget.py): microsteps and time.

The interpreter reads no clock: time reaches it only as the caller's ``out_of_time``
callable, asked at deterministic points. These tests drive that callable by hand.
"""

from __future__ import annotations

from typing import Any

import pytest

from statefleet.engine.interpreter import load_machine
from statefleet.engine.interpreter.budget import StepBudget
from statefleet.engine.runtime import step_limits

#: Each GO runs an eventless chain of ``context.limit`` microsteps.
CHAIN: dict[str, Any] = {
    "id": "chain",
    "initial": "idle",
    "context": {"n": 0, "limit": 0},
    "states": {
        "idle": {
            "on": {"GO": {"target": "busy", "actions": {"type": "assign", "path": "n", "value": 0}}}
        },
        "busy": {
            "always": [
                {
                    "guard": {"expr": "context.n < context.limit"},
                    "actions": {
                        "type": "assign",
                        "path": "n",
                        "value": {"$expr": "context.n + 1"},
                    },
                },
                {"target": "idle"},
            ]
        },
    },
}


def parallel(regions: int) -> dict[str, Any]:
    states = {
        f"r{i}": {"initial": "a", "states": {"a": {"on": {"GO": "b"}}, "b": {}}}
        for i in range(regions)
    }
    return {"id": "p", "type": "parallel", "states": states}


class Clock:
    """An ``out_of_time`` that says yes from its ``expire_at``-th call on; counts calls."""

    def __init__(self, expire_at: int | None = None) -> None:
        self.calls = 0
        self.expire_at = expire_at

    def __call__(self) -> bool:
        self.calls += 1
        return self.expire_at is not None and self.calls >= self.expire_at


def go(machine: Any, limit: int, budget: StepBudget | None = None) -> Any:
    start = machine.initial_state({"limit": limit})
    return machine.transition(start.snapshot, {"type": "GO"}, budget)


def test_the_microstep_budget_is_the_callers() -> None:
    machine = load_machine(CHAIN)
    assert go(machine, 40, StepBudget(max_microsteps=50)).status == "active"
    failed = go(machine, 60, StepBudget(max_microsteps=50))
    assert failed.status == "error"
    assert failed.effects == ()
    assert failed.snapshot.value == "idle"  # the step is rejected as a whole
    assert failed.error is not None
    assert failed.error.startswith("step budget exceeded: more than 50 microsteps")
    assert "chain.busy" in failed.error
    # Without a budget, the default (1000, XState's maxIterations in the tests) applies.
    assert go(machine, 900).status == "active"
    assert go(machine, 1100).status == "error"


def test_the_time_budget_cuts_a_long_step_with_a_message_naming_it() -> None:
    machine = load_machine(CHAIN)
    clock = Clock(expire_at=3)
    failed = go(machine, 500, StepBudget(out_of_time=clock, time_budget_ms=250))
    assert failed.status == "error"
    assert failed.error is not None
    assert failed.error.startswith("step budget exceeded: CPU time over 250 ms")
    assert clock.calls == 3  # stopped at the first "yes"


def test_the_clock_is_asked_at_the_same_points_on_every_run() -> None:
    machine = load_machine(parallel(300))
    counts = []
    for _ in range(2):
        clock = Clock()
        step = machine.transition(
            machine.initial_state().snapshot, {"type": "GO"}, StepBudget(out_of_time=clock)
        )
        assert step.status == "active"
        counts.append(clock.calls)
    assert counts[0] == counts[1] > 1  # one wide microstep still checks the time


def test_a_step_with_no_clock_is_the_same_pure_step() -> None:
    machine = load_machine(parallel(50))
    start = machine.initial_state().snapshot
    plain = machine.transition(start, {"type": "GO"})
    budgeted = machine.transition(start, {"type": "GO"}, StepBudget(out_of_time=Clock()))
    assert plain == budgeted
    assert plain.snapshot.value == {f"r{i}": "b" for i in range(50)}


@pytest.mark.parametrize("regions", [1000, 2000])
def test_one_event_to_many_regions_does_linear_work(regions: int) -> None:
    """Work units counted by the budget grow linearly with the regions (no timing)."""
    machine = load_machine(parallel(regions))
    clock = Clock()
    step = machine.transition(
        machine.initial_state().snapshot,
        {"type": "GO"},
        StepBudget(out_of_time=clock, check_every=1),
    )
    assert step.snapshot.value == {f"r{i}": "b" for i in range(regions)}
    # Each region: its exit (1), its transition's actions (1), its entry (1), plus the
    # final eventless pass; asked once per unit, so the calls are the units.
    assert clock.calls <= 3 * regions + 5


def test_the_runtime_clock_starts_at_the_second_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # StepLimits reads the thread's CPU clock (a system call) only from a step's second
    # check on: a step that ends in its first pass never reads it. The time limit
    # still holds from there: CPU time past the budget answers "out of time".
    reads: list[float] = []
    cpu = iter([10.0, 10.0005, 10.002])

    def thread_time() -> float:
        reads.append(now := next(cpu))
        return now

    monkeypatch.setattr(step_limits.time, "thread_time", thread_time)
    out_of_time = step_limits.StepLimits(time_budget_ms=1).budget().out_of_time
    assert out_of_time is not None
    assert out_of_time() is False
    assert reads == []
    assert out_of_time() is False
    assert reads == [10.0]
    assert out_of_time() is False  # 10.0005
    assert out_of_time() is True  # 10.002
    # A step that ends in its first pass reads the clock not at all.
    machine = load_machine(parallel(2))
    reads.clear()
    step = machine.transition(
        machine.initial_state().snapshot,
        {"type": "GO"},
        step_limits.StepLimits().budget(),
    )
    assert step.snapshot.value == {"r0": "b", "r1": "b"}
    assert reads == []
