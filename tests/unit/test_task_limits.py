"""``task.limits`` from the spec to the task row: validation, the effect, ``plan_effects``.

The admitter that enforces the limits is tested with the engine; here the
pure path is pinned: what a spec may declare (each rejection names its JSON
path), the key the interpreter resolves from the task's input, and the
columns ``plan_effects`` fills from it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from statefleet.engine.interpreter import CreateTask, Step, load_machine
from statefleet.engine.runtime.plan import InstancePlan, TaskRow, plan_effects
from statefleet.engine.spec import SpecError, SpecValidationError, validate_spec
from statefleet.engine.spec.models import CreateTaskAction


def task_spec(task: dict[str, Any], *, on_go: bool = False) -> dict[str, Any]:
    """A one-state spec whose entry (or ``GO`` transition) creates ``task``."""
    action = {"type": "createTask", "task": {"type": "AI", "name": "ask", **task}}
    state: dict[str, Any] = {"on": {"GO": {"actions": [action]}}} if on_go else {"entry": [action]}
    return {
        "id": "limits",
        "initial": "a",
        "context": {"customer": "acme"},
        "states": {"a": state},
    }


def errors_of(spec: dict[str, Any]) -> list[SpecError]:
    with pytest.raises(SpecValidationError) as caught:
        validate_spec(spec)
    return list(caught.value.errors)


def the_effect(step: Step) -> CreateTask:
    assert step.snapshot.status == "active", step.snapshot.error
    [effect] = step.effects
    assert isinstance(effect, CreateTask)
    return effect


def first_effect(task: dict[str, Any]) -> CreateTask:
    return the_effect(load_machine(task_spec(task)).initial_state())


# --- validation ------------------------------------------------------------------------

LIMITS = "states.a.entry[0].task.limits"


@pytest.mark.parametrize(
    ("limits", "path", "message"),
    [
        ({}, LIMITS, "`limits` needs `concurrency`, `perSecond` or both"),
        ({"key": "input.customer"}, LIMITS, "`limits` needs `concurrency`, `perSecond` or both"),
        ({"concurrency": 0}, f"{LIMITS}.concurrency", "`concurrency` must be at least 1, not 0"),
        ({"concurrency": 1.5}, f"{LIMITS}.concurrency", "must be an integer, not a number"),
        ({"concurrency": "5"}, f"{LIMITS}.concurrency", "must be an integer, not a string"),
        ({"concurrency": True}, f"{LIMITS}.concurrency", "must be an integer, not a boolean"),
        ({"perSecond": 0}, f"{LIMITS}.perSecond", "`perSecond` must be greater than 0, not 0"),
        ({"perSecond": -2.5}, f"{LIMITS}.perSecond", "must be greater than 0, not -2.5"),
        ({"perSecond": "50"}, f"{LIMITS}.perSecond", "`perSecond` must be a number, not a string"),
        ({"perSecond": False}, f"{LIMITS}.perSecond", "must be a number, not a boolean"),
        ({"concurrency": 1, "key": ""}, f"{LIMITS}.key", "`key` must be a non-empty string"),
        ({"concurrency": 1, "key": 7}, f"{LIMITS}.key", "`key` must be a string, not a number"),
        ({"concurrency": 1, "key": "input."}, f"{LIMITS}.key", "CEL expression does not compile"),
        ({"concurrency": 1, "key": "inputs.customer"}, f"{LIMITS}.key", "undeclared reference"),
        ({"concurrency": 1, "key": "1 + 'a'"}, f"{LIMITS}.key", "no matching overload"),
        ({"concurrency": 1, "burst": 3}, f"{LIMITS}.burst", "unknown key 'burst'"),
        (5, LIMITS, "`limits` must be an object, not a number"),
    ],
)
def test_bad_limits_are_rejected_with_their_path(limits: Any, path: str, message: str) -> None:
    errors = errors_of(task_spec({"limits": limits}))
    assert [error.path for error in errors] == [path], errors
    assert message in errors[0].message, errors


def test_input_is_declared_only_for_the_limit_key() -> None:
    """``input`` is the task's input for ``limits.key`` alone; elsewhere it is undeclared."""
    spec = task_spec(
        {"input": {"x": {"$expr": "input.customer"}}, "limits": {"concurrency": 1, "key": "input"}}
    )
    errors = errors_of(spec)
    assert [error.path for error in errors] == ["states.a.entry[0].task.input.x.$expr"]
    assert "undeclared reference to 'input.customer'" in errors[0].message


@pytest.mark.parametrize(
    "limits",
    [
        {"concurrency": 1},
        {"perSecond": 50},
        {"perSecond": 0.5},
        {"concurrency": 5, "perSecond": 50, "key": "input.customer"},
        {"concurrency": 1, "key": "context.customer + ':' + event.type"},
        {"concurrency": 1, "key": "params"},
    ],
)
def test_good_limits_load(limits: dict[str, Any]) -> None:
    spec = validate_spec(task_spec({"limits": limits}))
    assert spec.states is not None
    [action] = spec.states["a"].entry
    assert isinstance(action, CreateTaskAction)
    declared = action.task.limits
    assert declared is not None
    assert declared.concurrency == limits.get("concurrency")
    assert declared.per_second == limits.get("perSecond")
    assert declared.key == limits.get("key")


# --- the effect ------------------------------------------------------------------------


def test_no_limits_leaves_the_effect_as_it_was() -> None:
    effect = first_effect({"input": {"q": 1}})
    assert effect.limits is None
    assert "limits" not in effect.as_dict()["task"]


def test_without_a_key_the_task_type_is_the_key() -> None:
    effect = first_effect({"limits": {"concurrency": 5, "perSecond": 2.5}})
    assert effect.limits == {"key": "AI", "concurrency": 5, "perSecond": 2.5}
    assert effect.as_dict()["task"]["limits"] == effect.limits


def test_the_key_sees_the_resolved_input() -> None:
    effect = first_effect(
        {
            "input": {"customer": {"$expr": "context.customer + '-1'"}},
            "limits": {"concurrency": 1, "key": "input.customer"},
        }
    )
    assert effect.limits == {"key": "AI:acme-1", "concurrency": 1}


def test_the_key_sees_context_event_and_params() -> None:
    """``context`` and ``event`` as every expression sees them; a named action's ``params``."""
    go_task = {"perSecond": 3, "key": "context.customer + '/' + event.type"}
    spec = task_spec({"limits": go_task}, on_go=True)
    spec["actions"] = {
        "ask": {
            "type": "createTask",
            "task": {
                "type": "AI",
                "name": "ask",
                "limits": {"concurrency": 1, "key": "params.tier"},
            },
        }
    }
    spec["states"]["a"]["on"]["ASK"] = {"actions": [{"type": "ask", "params": {"tier": "gold"}}]}
    machine = load_machine(spec)
    start = machine.initial_state()
    go = the_effect(machine.transition(start.snapshot, {"type": "GO", "payload": {}}))
    assert go.limits == {"key": "AI:acme/GO", "perSecond": 3.0}
    ask = the_effect(machine.transition(start.snapshot, {"type": "ASK", "payload": {}}))
    assert ask.limits == {"key": "AI:gold", "concurrency": 1}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("input", {"b": [1, 2.5, None], "a": {"z": True, "y": "é"}}),
        ("input.n", 42),
        ("input.n > 1", True),
        ("[input.n, 'x']", [42, "x"]),
        ("null", None),
    ],
)
def test_a_value_that_is_not_a_string_becomes_its_sorted_json(key: str, value: Any) -> None:
    task_input: dict[str, Any] = {"b": [1, 2.5, None], "a": {"z": True, "y": "é"}, "n": 42}
    if key == "input":
        task_input = value
    effect = first_effect({"input": task_input, "limits": {"concurrency": 2, "key": key}})
    assert effect.limits is not None
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert effect.limits["key"] == f"AI:{expected}"


def test_equal_maps_give_equal_keys_whatever_their_order() -> None:
    one = first_effect({"input": {"a": 1, "b": 2}, "limits": {"concurrency": 1, "key": "input"}})
    two = first_effect({"input": {"b": 2, "a": 1}, "limits": {"concurrency": 1, "key": "input"}})
    assert one.limits == two.limits == {"key": 'AI:{"a":1,"b":2}', "concurrency": 1}


def test_a_failing_key_fails_the_step_with_the_reason() -> None:
    spec = task_spec(
        {"input": {}, "limits": {"concurrency": 1, "key": "input.customer"}}, on_go=True
    )
    machine = load_machine(spec)
    start = machine.initial_state()
    step = machine.transition(start.snapshot, {"type": "GO", "payload": {}})
    assert step.snapshot.status == "error"
    assert step.effects == ()
    assert step.snapshot.error is not None
    assert "states.a.on.GO[0].actions[0]" in step.snapshot.error
    assert "`limits.key` expression `input.customer` failed" in step.snapshot.error
    assert "customer" in step.snapshot.error.split("failed:")[1]


# --- plan_effects ----------------------------------------------------------------------


def planned_tasks(step: Step) -> list[TaskRow]:
    instance_id = uuid.uuid4()
    plan = InstancePlan(
        tenant_id="t1",
        instance_id=instance_id,
        version=1,
        snapshot=step.snapshot.as_dict(),
        status="running",
        output=None,
        error=None,
    )
    plan_effects("t1", instance_id, step, plan, seq=0)
    return plan.tasks


def test_plan_effects_fills_the_limit_columns() -> None:
    spec = task_spec({})
    spec["states"]["a"]["entry"] = [
        {
            "type": "createTask",
            "task": {
                "type": "AI",
                "name": "keyed",
                "input": {"customer": "c7"},
                "limits": {"concurrency": 2, "perSecond": 10, "key": "input.customer"},
            },
        },
        {
            "type": "createTask",
            "task": {"type": "EMAIL", "name": "typed", "limits": {"perSecond": 0.5}},
        },
        {"type": "createTask", "task": {"type": "EMAIL", "name": "free"}},
    ]
    spec["states"]["a"]["after"] = {"1000": {"actions": []}}
    tasks = {task.name: task for task in planned_tasks(load_machine(spec).initial_state())}
    keyed, typed, free = tasks["keyed"], tasks["typed"], tasks["free"]
    assert (keyed.limit_key, keyed.limit_concurrency, keyed.limit_per_second) == ("AI:c7", 2, 10.0)
    assert (typed.limit_key, typed.limit_concurrency, typed.limit_per_second) == (
        "EMAIL",
        None,
        0.5,
    )
    assert (free.limit_key, free.limit_concurrency, free.limit_per_second) == (None, None, None)
    [timer] = [task for task in tasks.values() if task.kind == "timer"]
    assert timer.limit_key is None  # timers are never limited
