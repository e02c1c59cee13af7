"""Spec validation: what contract v1 accepts, and how every rejection is reported."""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import pytest

import statefleet.engine.spec as spec_package
from statefleet.engine.cel import compile_expr
from statefleet.engine.interpreter import load_machine
from statefleet.engine.spec import (
    SpecError,
    SpecValidationError,
    StateIndex,
    WorkflowSpec,
    validate_spec,
)
from statefleet.engine.spec import validate as validate_module

# The seed's hello workflow (workflow-engine-seed.md), unchanged.
HELLO: dict[str, Any] = json.loads(
    (pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hello-workflow.json").read_text()
)

# Every row of the contract at least once.
KITCHEN_SINK: dict[str, Any] = {
    "id": "order-flow",
    "description": "exercises every contract row",
    "meta": {"owner": "spec-tests"},
    "initial": "idle",
    "context": {"order": {"total": 0}, "email": "a@example.com"},
    "guards": {
        "isApproved": "event.payload.approved == true",
        "isRejected": {"expr": "event.payload.approved == false", "description": "no"},
        "isBig": {"expr": "context.order.total > params.limit"},
    },
    "actions": {
        "notify": {
            "type": "createTask",
            "task": {
                "type": "EMAIL",
                "name": "notify",
                "input": {"to": {"$expr": "context.email"}, "subject": {"$expr": "params.subject"}},
            },
        },
        "bump": {
            "type": "assign",
            "path": "order.total",
            "value": {"$expr": "context.order.total + 1"},
        },
    },
    "states": {
        "idle": {
            "entry": "bump",
            "exit": {"type": "notify", "params": {"subject": "bye"}},
            "on": {
                "START": {"target": "working", "cond": "isApproved"},
                "order.*": {
                    "actions": {
                        "type": "assign",
                        "assignments": {"order.last": {"$expr": "event.type"}, "seen": True},
                    }
                },
                "*": {"actions": []},
                "NOOP": "",
            },
        },
        "working": {
            "id": "work",
            "type": "parallel",
            "states": {
                "left": {
                    "initial": "a",
                    "states": {"a": {"on": {"NEXT": "b"}}, "b": {"type": "final"}},
                },
                "right": {
                    "initial": "c",
                    "states": {
                        "c": {
                            "after": {
                                "5000": "d",
                                "PT5M": {"target": "#work.right.d"},
                                "P1DT0.5S": [{"target": "d", "guard": "isApproved"}, "d"],
                            }
                        },
                        "d": {"type": "final"},
                    },
                },
            },
            "onDone": "review",
        },
        "review": {
            "initial": "pending",
            "states": {
                "pending": {
                    "always": [
                        {
                            "target": "approved",
                            "guard": {
                                "type": "and",
                                "guards": [
                                    "isApproved",
                                    {"type": "not", "guard": {"expr": "context.order.total > 100"}},
                                ],
                            },
                        }
                    ],
                    "on": {"REOPEN": "#order-flow.idle"},
                },
                "approved": {"type": "final"},
            },
            "on": {
                "RESTART": {"target": ".pending", "reenter": True, "description": "again"},
                "BIG": {"guard": {"type": "isBig", "params": {"limit": 10}}, "target": "done"},
                "EITHER": {
                    "guard": {"type": "or", "guards": ["isApproved", "isRejected"]},
                    "target": ["done"],
                },
                "SCHEDULE": {
                    "actions": [
                        {
                            "type": "createTask",
                            "task": {
                                "type": "AI",
                                "name": "later",
                                "input": {"items": [{"id": {"$expr": "context.order.total"}}, 2]},
                                "runAt": "2026-01-01T00:00:00Z",
                                "idempotencyKey": {"$expr": "'later-' + context.email"},
                                "completionEvent": "LATER_DONE",
                                "failureEvent": "LATER_FAILED",
                                "retry": {
                                    "maxAttempts": 5,
                                    "backoff": {"type": "fixed", "delay": "PT1S"},
                                },
                                "timeout": "PT30S",
                                "policy": {"allowedEvents": ["APPROVE"], "allowDirectEmit": True},
                            },
                        },
                        {
                            "type": "createTask",
                            "task": {
                                "type": "EMAIL",
                                "name": "soon",
                                "delay": {"$expr": "1000 * 60"},
                                "retry": {"maxAttempts": 2},
                                "timeout": 60000,
                            },
                        },
                        {
                            "type": "createTask",
                            "task": {"type": "EMAIL", "name": "fixed", "delay": "PT10M"},
                        },
                    ]
                },
            },
            "onDone": {
                "target": "done",
                "actions": [
                    {
                        "type": "raise",
                        "event": {
                            "type": "REVIEWED",
                            "payload": {"by": {"$expr": "context.email"}},
                        },
                    },
                    {"type": "raise", "event": {"type": "PLAIN"}},
                ],
            },
        },
        "done": {
            "type": "final",
            "tags": ["end"],
            "output": {"total": {"$expr": "context.order.total"}, "currency": "EUR"},
            "entry": [
                {"type": "cancelTask", "idempotencyKey": {"$expr": "'later-' + context.email"}},
                {"type": "cancelTask", "idempotencyKey": "literal-key"},
                {"type": "cancelTask", "name": "soon"},
            ],
        },
    },
}


def machine(states: dict[str, Any], **root: Any) -> dict[str, Any]:
    """A root with id ``m`` whose ``initial`` is its first state."""
    return {"id": "m", "initial": next(iter(states)), **root, "states": states}


def errors_of(spec: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecValidationError) as info:
        validate_spec(spec)
    assert all(isinstance(error, SpecError) for error in info.value.errors)
    return [(error.path, error.message) for error in info.value.errors]


def only_error(spec: Any) -> tuple[str, str]:
    errors = errors_of(spec)
    assert len(errors) == 1, errors
    return errors[0]


def assert_only_error(spec: Any, path: str, fragment: str) -> None:
    found_path, message = only_error(spec)
    assert (found_path, fragment in message) == (path, True), (found_path, message)


# --- accepted specs ---------------------------------------------------------


def test_hello_workflow_validates() -> None:
    spec = validate_spec(copy.deepcopy(HELLO))
    assert isinstance(spec, WorkflowSpec)
    assert spec.states is not None
    transition = spec.states["start"].on["WORKFLOW_START"][0]
    assert transition.target == ("notify",)
    assert spec.states["done"].kind == "final"


def test_every_contract_row_validates() -> None:
    spec = validate_spec(copy.deepcopy(KITCHEN_SINK))
    assert spec.states is not None
    idle = spec.states["idle"]
    assert idle.on["NOOP"][0].target == ()  # "" is XState's targetless transition
    assert idle.on["START"][0].guard is not None  # `cond` is read as `guard`
    index = StateIndex.build(spec)
    assert index.resolve(("review", "pending"), "#order-flow.idle") == ("idle",)


def test_parallel_root_needs_no_initial() -> None:
    spec = {
        "id": "m",
        "type": "parallel",
        "states": {"r1": {"initial": "a", "states": {"a": {}}}, "r2": {}},
    }
    assert validate_spec(spec).kind == "parallel"


def test_validation_does_not_mutate_its_input() -> None:
    spec = copy.deepcopy(KITCHEN_SINK)
    validate_spec(spec)
    assert spec == KITCHEN_SINK


def test_public_api_is_sorted_and_complete() -> None:
    names = spec_package.__all__
    assert names == sorted(names)
    for name in (
        "SpecError",
        "SpecValidationError",
        "WorkflowSpec",
        "validate_spec",
        "parse_delay_ms",
        "resolve_target",
        "StateIndex",
    ):
        assert name in names


# --- reporting --------------------------------------------------------------


def test_non_object_spec_is_a_root_error() -> None:
    assert only_error([1, 2]) == ("", "a workflow spec must be a JSON object, not a list")


def test_every_problem_is_reported_in_document_order() -> None:
    spec = {
        "id": "m",
        "initial": "a",
        "guards": {"g": "context.x >"},
        "states": {
            "a": {
                "on": {
                    "GO": [{"target": "nowhere"}, {"target": "b", "reenter": "yes"}],
                    "5": "b",
                },
                "entry": [{"type": "nope"}],
            },
            "b": {"type": "final", "on": {"X": "a"}, "bogus": 1},
        },
        "extra": True,
    }
    assert [path for path, _ in errors_of(spec)] == [
        "guards.g",
        "states.a.on.GO[0].target",
        "states.a.on.GO[1].reenter",
        'states.a.on["5"]',
        "states.a.entry[0].type",
        "states.b.on",
        "states.b.bogus",
        "extra",
    ]


def test_structural_and_semantic_problems_are_reported_together() -> None:
    spec = machine({"a": {"on": {"GO": {"target": "zz", "reenter": 1}}}})
    assert errors_of(spec) == [
        (
            "states.a.on.GO.target",
            "target 'zz' does not resolve: state 'm' has no child 'zz'; its children are: a",
        ),
        ("states.a.on.GO.reenter", "`reenter` must be true or false, not a number"),
    ]


def test_error_text_lists_every_problem() -> None:
    with pytest.raises(SpecValidationError) as info:
        validate_spec({"id": "m", "states": {"a": {}}, "x": 1})
    text = str(info.value)
    assert "invalid workflow spec (2 error(s))" in text
    assert "  - (root): the root needs `initial`" in text
    assert "  - x: unknown key 'x': not part of spec v1" in text


# --- structure (pydantic), re-anchored on what the author wrote --------------


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        (machine({"a": {}}, bogus=1), "bogus", "unknown key 'bogus': not part of spec v1"),
        (
            machine({"a": {"invoke": {}}}),
            "states.a.invoke",
            "unknown key 'invoke': invoked actors are not supported",
        ),
        ({"initial": "a", "states": {"a": {}}}, "", "missing required key 'id'"),
        (machine({"a": {}}, id=""), "id", "`id` must be a non-empty string"),
        (machine({"a": {}}, context=[]), "context", "`context` must be an object, not a list"),
        (
            machine({"a": {}}, type="final"),
            "type",
            "the root's `type` must be 'compound' or 'parallel', not 'final'",
        ),
        (
            machine({"a": {"type": "weird"}}),
            "states.a.type",
            "'weird' is not allowed here; expected 'atomic', 'compound', 'parallel' or 'final'",
        ),
        (machine({"a": 5}), "states.a", "`a` must be a state node object, not a number"),
        # a single transition object: no invented [0]
        (
            machine({"a": {"on": {"GO": {"target": "a", "reenter": "yes"}}}}),
            "states.a.on.GO.reenter",
            "`reenter` must be true or false, not a string",
        ),
        (
            machine({"a": {"on": {"GO": ["a", 5]}}}),
            "states.a.on.GO[1]",
            "must be a transition (a target string or an object), not a number",
        ),
        # a single action instead of a list: no invented [0]
        (
            machine({"a": {"entry": {"type": "createTask"}}}),
            "states.a.entry",
            "missing required key 'task'",
        ),
        (
            machine({"a": {"entry": [{"type": "assign"}]}}),
            "states.a.entry[0]",
            "assign takes either `path` and `value`, or `assignments`",
        ),
        # union tags (`logic`, `expr`) are not part of the path
        (
            machine(
                {
                    "a": {
                        "always": {"target": "a", "guard": {"type": "and", "guards": [{"expr": 1}]}}
                    }
                }
            ),
            "states.a.always.guard.guards[0].expr",
            "`expr` must be a string, not a number",
        ),
        # `cond` is reported as `cond`, the key the author wrote
        (
            machine({"a": {"on": {"GO": {"target": "a", "cond": {"type": "not"}}}}}),
            "states.a.on.GO.cond",
            "missing required key 'guard'",
        ),
        (
            machine(
                {"a": {"on": {"GO": {"target": "a", "cond": "x", "guard": "x"}}}},
                guards={"x": "true"},
            ),
            "states.a.on.GO",
            "give `guard` or its alias `cond`, not both",
        ),
        (
            machine({"a": {"entry": {"type": "cancelTask"}}}),
            "states.a.entry",
            "cancelTask takes exactly one of `idempotencyKey` or `name`",
        ),
        (
            machine({"a": {"entry": {"type": "raise", "event": {"type": ""}}}}),
            "states.a.entry.event.type",
            "`type` must be a non-empty string",
        ),
        (
            machine(
                {
                    "a": {
                        "entry": {
                            "type": "createTask",
                            "task": {"type": "T", "name": "n", "retry": {"maxAttempts": "3"}},
                        }
                    }
                }
            ),
            "states.a.entry.task.retry.maxAttempts",
            "`maxAttempts` must be an integer, not a string",
        ),
        (
            machine(
                {
                    "a": {
                        "entry": {
                            "type": "createTask",
                            "task": {"type": "T", "name": "n", "retry": {"maxAttempts": 0}},
                        }
                    }
                }
            ),
            "states.a.entry.task.retry.maxAttempts",
            "`maxAttempts` must be at least 1, not 0",
        ),
        (
            machine(
                {
                    "a": {
                        "entry": {
                            "type": "createTask",
                            "task": {"type": "T", "name": "n", "timeout": {"$expr": "1"}},
                        }
                    }
                }
            ),
            "states.a.entry.task.timeout",
            "`timeout` does not take `$expr`: it must be a literal (an integer or a string)",
        ),
        (
            machine(
                {"a": {"entry": {"type": "notify", "params": 3}}},
                actions={"notify": {"type": "raise", "event": {"type": "N"}}},
            ),
            "states.a.entry.params",
            "`params` must be an object, not a number",
        ),
        (
            machine({"a": {}}, guards={"g": 5}),
            "guards.g",
            "`g` must be a CEL string or an object with `expr`, not a number",
        ),
    ],
)
def test_structural_errors(spec: dict[str, Any], path: str, message: str) -> None:
    assert_only_error(spec, path, message)


def test_pydantic_jargon_is_translated() -> None:
    spec = machine({"a": {"bogus": 1, "entry": {"type": "raise"}}})
    for _, message in errors_of(spec):
        assert "Extra inputs" not in message
        assert "Field required" not in message
        assert "Value error" not in message


# --- state tree ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        (
            {"id": "m", "states": {"a": {}, "b": {}}},
            "",
            "the root needs `initial` naming one of its children (unless the root's `type` is "
            "'parallel'): a, b",
        ),
        (
            machine({"a": {}}, initial="zz"),
            "initial",
            "initial state 'zz' is not a child of this state; its children are: a",
        ),
        ({"id": "m"}, "", "missing required key 'states'"),
        (machine({"a": {}}) | {"states": {}}, "states", "a workflow needs at least one state"),
        (
            {"id": "m", "type": "parallel", "initial": "a", "states": {"a": {}}},
            "initial",
            "a parallel state takes no `initial`",
        ),
        (
            machine({"p": {"states": {"a": {}, "b": {}}}}),
            "states.p",
            "a compound state needs `initial` naming one of its children: a, b",
        ),
        (
            machine({"p": {"initial": "zz", "states": {"a": {}}}}),
            "states.p.initial",
            "initial state 'zz' is not a child of this state; its children are: a",
        ),
        (
            machine({"a": {"initial": "x"}}),
            "states.a.initial",
            "an atomic state takes no `initial`",
        ),
        (
            machine({"p": {"type": "parallel", "initial": "a", "states": {"a": {}}}}),
            "states.p.initial",
            "a parallel state takes no `initial`",
        ),
        (
            machine({"a": {"type": "atomic", "states": {"x": {}}}}),
            "states.a.states",
            "an atomic state cannot have child `states`",
        ),
        (
            machine({"p": {"type": "parallel"}}),
            "states.p",
            "a parallel state needs at least one child state under `states`",
        ),
        (
            machine({"p": {"type": "compound", "states": {}}}),
            "states.p",
            "a compound state needs at least one child state under `states`",
        ),
        (
            machine({"a": {"onDone": "a"}}),
            "states.a.onDone",
            "`onDone` is only for compound and parallel states",
        ),
        (machine({"a": {}}, onDone=".a"), "onDone", "the root takes no `onDone`"),
        (
            machine({"a": {"output": 1}}),
            "states.a.output",
            "`output` is only allowed on final states that are direct children of the root",
        ),
        (
            machine({"p": {"initial": "f", "states": {"f": {"type": "final", "output": 1}}}}),
            "states.p.states.f.output",
            "`output` is only allowed on final states that are direct children of the root",
        ),
        (
            machine({"a": {}}, output=1),
            "output",
            "`output` is only allowed on final states that are direct children of the root",
        ),
        (
            machine({"p": {"initial": "h", "states": {"h": {"type": "history"}}}}),
            "states.p.states.h",
            "history states are not supported in spec v1",
        ),
        (
            machine({"a": {}}) | {"type": "history"},
            "",
            "history states are not supported in spec v1",
        ),
    ],
)
def test_state_tree_rules(spec: dict[str, Any], path: str, message: str) -> None:
    assert_only_error(spec, path, message)


@pytest.mark.parametrize("key", ["states", "initial", "on", "always", "after", "onDone"])
def test_final_states_take_no_children_or_transitions(key: str) -> None:
    values = {
        "states": {"x": {}},
        "initial": "x",
        "on": {"GO": "a"},
        "always": "a",
        "after": {"100": "a"},
        "onDone": "a",
    }
    spec = machine({"a": {}, "f": {"type": "final", key: values[key]}})
    assert_only_error(spec, f"states.f.{key}", f"a final state cannot have `{key}`")


@pytest.mark.parametrize(
    ("key", "path", "message"),
    [
        ("", 'states[""]', "a state key must be a non-empty string"),
        ("a.b", 'states["a.b"]', "state key 'a.b' may not contain '.'"),
        ("#a", 'states["#a"]', "state key '#a' may not start with '#'"),
        ("5", 'states["5"]', "state key '5' looks like an integer"),
    ],
)
def test_state_keys(key: str, path: str, message: str) -> None:
    assert_only_error(machine({"ok": {}, key: {}}), path, message)


# --- ids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "path", "message"),
    [
        (
            {"a": {"id": "x"}, "b": {"id": "x"}},
            "states.b.id",
            "duplicate state id 'x': states.a already uses it",
        ),
        ({"a": {}, "b": {"id": "m.a"}}, "states.b.id", "custom id 'm.a' may not contain '.'"),
        (
            {"a": {}, "b": {"id": "m"}},
            "states.b.id",
            "custom id 'm' collides with the default id of the root",
        ),
        ({"a": {"id": ""}}, "states.a.id", "a custom `id` must be a non-empty string"),
    ],
)
def test_state_ids(states: dict[str, Any], path: str, message: str) -> None:
    errors = errors_of(machine(states))
    assert errors[0][0] == path, errors
    assert message in errors[0][1]


def test_a_custom_id_may_collide_with_a_default_id_of_another_node() -> None:
    errors = errors_of(machine({"a": {}, "b": {"id": "m.a"}}))
    assert errors == [
        (
            "states.b.id",
            "custom id 'm.a' may not contain '.': the target '#m.a' would be read "
            "as an id followed by child states",
        ),
        ("states.b.id", "custom id 'm.a' collides with the default id of states.a"),
    ]


# --- events and targets ---------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("", "an event type cannot be empty; use `always` for eventless transitions"),
        ("5", "event type '5' looks like an integer"),
        ("*.x", "invalid wildcard '*.x'"),
        ("order*", "invalid wildcard 'order*'"),
        ("a.*.b", "invalid wildcard 'a.*.b'"),
        (".*", "invalid wildcard '.*'"),
        ("a.**", "invalid wildcard 'a.**'"),
    ],
)
def test_event_types(event: str, message: str) -> None:
    path = f'states.a.on["{event}"]'
    assert_only_error(machine({"a": {"on": {event: "a"}}}), path, message)


@pytest.mark.parametrize("event", ["*", "order.*", "order.created.*", "order.created"])
def test_valid_event_types(event: str) -> None:
    validate_spec(machine({"a": {"on": {event: "a"}}}))


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        (
            machine({"a": {"on": {"GO": "zz"}}}),
            "states.a.on.GO",
            "target 'zz' does not resolve: state 'm' has no child 'zz'; its children are: a",
        ),
        (
            machine({"a": {"on": {"GO": {"target": ["a", "#nope"]}}}}),
            "states.a.on.GO.target[1]",
            "target '#nope' does not resolve: no state has the id 'nope'",
        ),
        (
            machine({"a": {"on": {"GO": [{"target": "a"}, {"target": ".x"}]}}}),
            "states.a.on.GO[1].target",
            "state 'm.a' has no child states (looking for 'x')",
        ),
        (
            machine({"a": {}}, on={"GO": "a"}),
            "on.GO",
            "not valid from the root node, which has no siblings; did you mean '.a'?",
        ),
        (
            machine({"a": {"after": {"PT1S": "b"}}}),
            "states.a.after.PT1S",
            "target 'b' does not resolve",
        ),
        (
            machine({"a": {"always": ["a", {"target": "q"}]}}),
            "states.a.always[1].target",
            "target 'q' does not resolve",
        ),
        (
            machine({"p": {"initial": "a", "states": {"a": {}}, "onDone": "#m.p.zz"}}),
            "states.p.onDone",
            "state 'm.p' has no child 'zz'; its children are: a",
        ),
    ],
)
def test_targets(spec: dict[str, Any], path: str, message: str) -> None:
    assert_only_error(spec, path, message)


def test_valid_targets() -> None:
    spec = machine(
        {
            "a": {"on": {"SIB": "b", "DEEP": "b.c", "ID": "#cee", "ROOT": "#m.b.c"}},
            "b": {"initial": "c", "states": {"c": {"id": "cee"}}, "on": {"CHILD": ".c"}},
        },
        on={"TOP": ".a", "ANY": "#m.b"},
    )
    validate_spec(spec)


# --- guards ------------------------------------------------------------------------


REVIEW_GUARDS = {"isApproved": "event.payload.ok", "isRejected": "!event.payload.ok"}


@pytest.mark.parametrize(
    ("transition", "path", "message"),
    [
        (
            {"target": "done", "guard": "isApprovd"},
            "states.review.on.APPROVE[1].guard",
            "unknown guard 'isApprovd'; defined guards: isApproved, isRejected",
        ),
        (
            {"target": "done", "cond": "isApprovd"},
            "states.review.on.APPROVE[1].cond",
            "unknown guard 'isApprovd'; defined guards: isApproved, isRejected",
        ),
        (
            {"target": "done", "guard": {"type": "isApprovd", "params": {"x": 1}}},
            "states.review.on.APPROVE[1].guard.type",
            "unknown guard 'isApprovd'",
        ),
        (
            {"target": "done", "guard": {"type": "and", "guards": []}},
            "states.review.on.APPROVE[1].guard.guards",
            "an `and` guard needs at least one guard in `guards`",
        ),
        (
            {"target": "done", "guard": {"type": "or", "guards": ["isApproved", "nope"]}},
            "states.review.on.APPROVE[1].guard.guards[1]",
            "unknown guard 'nope'",
        ),
        (
            {"target": "done", "guard": {"type": "not", "guard": {"expr": "context.x +"}}},
            "states.review.on.APPROVE[1].guard.guard.expr",
            "CEL expression does not compile: Syntax error",
        ),
        (
            {"target": "done", "guard": {"expr": "nope.x"}},
            "states.review.on.APPROVE[1].guard.expr",
            "CEL expression does not compile: undeclared reference to 'nope.x' (at column 5)",
        ),
        (
            {"target": "done", "guard": {"type": "isApproved", "params": {"x": {"$expr": "1"}}}},
            "states.review.on.APPROVE[1].guard.params.x",
            "`params` are literal JSON and `$expr` is not evaluated here",
        ),
    ],
)
def test_guards(transition: dict[str, Any], path: str, message: str) -> None:
    spec = machine(
        {"review": {"on": {"APPROVE": [{"target": "done"}, transition]}}, "done": {}},
        guards=REVIEW_GUARDS,
    )
    assert_only_error(spec, path, message)


def test_unknown_guard_without_any_guards() -> None:
    assert_only_error(
        machine({"a": {"on": {"GO": {"target": "a", "guard": "g"}}}}),
        "states.a.on.GO.guard",
        "unknown guard 'g'; no guards are defined under `guards`",
    )


@pytest.mark.parametrize(
    ("guards", "path", "message"),
    [
        ({"g": "context.x >"}, "guards.g", "CEL expression does not compile"),
        ({"g": {"expr": "1 + 'a'"}}, "guards.g.expr", "no matching overload"),
        ({"g": ""}, "guards.g", "a CEL expression must be a non-empty string"),
        ({"not": "true"}, "guards.not", "'not' is a logical guard type and cannot name a guard"),
    ],
)
def test_named_guards(guards: dict[str, Any], path: str, message: str) -> None:
    assert_only_error(machine({"a": {}}, guards=guards), path, message)


def test_each_cel_source_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sources: list[str] = []

    def counting_compile(source: str, *, with_input: bool = False) -> Any:
        sources.append(source)
        return compile_expr(source, with_input=with_input)

    monkeypatch.setattr(validate_module, "compile_expr", counting_compile)
    uses = {f"E{i}": {"target": "a", "guard": "g"} for i in range(5)}
    spec = machine({"a": {"on": uses}}, guards={"g": "context.ready == true"})
    validate_spec(spec)
    assert sources == ["context.ready == true"]


# --- actions and values ------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "path", "message"),
    [
        (
            {"type": "sendEmail"},
            "states.a.entry.type",
            "unknown action type 'sendEmail': not a built-in action (assign, cancelTask, "
            "createTask, raise) nor a named action under `actions`",
        ),
        ("sendEmail", "states.a.entry", "unknown action type 'sendEmail'"),
        (
            {"type": "assign", "path": "a..b", "value": 1},
            "states.a.entry.path",
            "invalid context path 'a..b': use dotted keys with no empty segment",
        ),
        (
            {"type": "assign", "path": "", "value": 1},
            "states.a.entry.path",
            "invalid context path ''",
        ),
        (
            {"type": "assign", "assignments": {"ok": 1, "x.": 2}},
            'states.a.entry.assignments["x."]',
            "invalid context path 'x.'",
        ),
    ],
)
def test_actions(action: Any, path: str, message: str) -> None:
    assert_only_error(machine({"a": {"entry": action}}), path, message)


@pytest.mark.parametrize(
    ("actions", "path", "message"),
    [
        (
            {"notify": {"type": "other"}, "other": {"type": "raise", "event": {"type": "X"}}},
            "actions.notify.type",
            "a named action must be a built-in action (assign, cancelTask, createTask, raise), "
            "not a reference to 'other'",
        ),
        (
            {"assign": {"type": "raise", "event": {"type": "X"}}},
            "actions.assign",
            "'assign' is a built-in action type and cannot be redefined",
        ),
        (
            {"n": {"type": "assign", "path": "x", "value": {"$expr": "nope"}}},
            "actions.n.value.$expr",
            "undeclared reference to 'nope'",
        ),
    ],
)
def test_named_actions(actions: dict[str, Any], path: str, message: str) -> None:
    assert_only_error(machine({"a": {}}, actions=actions), path, message)


BAD = {"$expr": "context.x +"}


def _task(**fields: Any) -> dict[str, Any]:
    return {"type": "createTask", "task": {"type": "T", "name": "n", **fields}}


@pytest.mark.parametrize(
    ("state", "path"),
    [
        ({"entry": {"type": "assign", "path": "x", "value": BAD}}, "states.a.entry.value.$expr"),
        (
            {"entry": {"type": "assign", "assignments": {"x": 1, "y": BAD}}},
            "states.a.entry.assignments.y.$expr",
        ),
        (
            {"entry": _task(input={"to": [1, {"deep": BAD}]})},
            "states.a.entry.task.input.to[1].deep.$expr",
        ),
        ({"entry": _task(runAt=BAD)}, "states.a.entry.task.runAt.$expr"),
        ({"entry": _task(delay=BAD)}, "states.a.entry.task.delay.$expr"),
        ({"entry": _task(idempotencyKey=BAD)}, "states.a.entry.task.idempotencyKey.$expr"),
        (
            {"exit": [{"type": "raise", "event": {"type": "E", "payload": {"p": BAD}}}]},
            "states.a.exit[0].event.payload.p.$expr",
        ),
        (
            {"entry": {"type": "cancelTask", "idempotencyKey": BAD}},
            "states.a.entry.idempotencyKey.$expr",
        ),
    ],
)
def test_expr_values_must_compile(state: dict[str, Any], path: str) -> None:
    assert_only_error(machine({"a": state}), path, "CEL expression does not compile")


def test_output_expr_must_compile() -> None:
    spec = machine({"a": {"on": {"GO": "f"}}, "f": {"type": "final", "output": {"t": BAD}}})
    assert_only_error(spec, "states.f.output.t.$expr", "CEL expression does not compile")


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        (
            {"$expr": "context.x", "y": {"$expr": "1 +"}},
            "states.a.entry.value.y.$expr",
            "CEL expression does not compile",
        ),
        ({"$expr": 5}, "states.a.entry.value.$expr", "`$expr` must be a CEL string, not a number"),
        ({"a": [{"$expr": ""}]}, "states.a.entry.value.a[0].$expr", "must be a non-empty string"),
    ],
)
def test_expr_objects(value: Any, path: str, message: str) -> None:
    spec = machine({"a": {"entry": {"type": "assign", "path": "x", "value": value}}})
    assert_only_error(spec, path, message)


@pytest.mark.parametrize(
    "value",
    [{"$expr": "context.x", "y": 1}, {"$expr": 5, "y": "z"}, {"$expr": [1], "a": {"b": 2}}],
)
def test_expr_beside_other_keys_is_a_literal_object(value: Any) -> None:
    """Precise point 12: only an object whose single key is `$expr` is an expression."""
    spec = machine({"a": {"entry": {"type": "assign", "path": "x", "value": value}}})
    validate_spec(spec)
    machine_ = load_machine(spec)
    assert machine_.initial_state().snapshot.context["x"] == value


def test_named_action_params_are_literal() -> None:
    spec = machine(
        {"a": {"entry": {"type": "n", "params": {"to": {"$expr": "context.email"}}}}},
        actions={"n": {"type": "raise", "event": {"type": "X"}}},
    )
    assert_only_error(spec, "states.a.entry.params.to", "`params` are literal JSON")


# --- delays and instants --------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "path", "message"),
    [
        (
            {"soon": "a"},
            "states.a.after.soon",
            "invalid delay 'soon': expected integer milliseconds",
        ),
        ({"P1M": "a"}, "states.a.after.P1M", "years and months have no fixed length"),
        ({"-5": "a"}, 'states.a.after["-5"]', "a delay cannot be negative"),
        (
            {"1000": "a", "PT1S": "a"},
            "states.a.after.PT1S",
            "delay 'PT1S' is 1000 ms, the same as '1000'",
        ),
    ],
)
def test_after_delays(after: dict[str, Any], path: str, message: str) -> None:
    assert_only_error(machine({"a": {"after": after}}), path, message)


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"delay": "P1Y"}, "states.a.entry.task.delay", "years and months have no fixed length"),
        ({"delay": -1}, "states.a.entry.task.delay", "a delay cannot be negative"),
        ({"delay": [1]}, "states.a.entry.task.delay", "invalid delay [1]"),
        ({"timeout": "5 minutes"}, "states.a.entry.task.timeout", "invalid delay '5 minutes'"),
        ({"timeout": 0}, "states.a.entry.task.timeout", "a task `timeout` must be positive"),
        (
            {"retry": {"backoff": {"delay": "P1M"}}},
            "states.a.entry.task.retry.backoff.delay",
            "no fixed length",
        ),
        (
            {"runAt": "2026-01-01T00:00:00"},
            "states.a.entry.task.runAt",
            "needs a time and a timezone",
        ),
        ({"runAt": "soon"}, "states.a.entry.task.runAt", "expected an ISO-8601 date-time"),
        ({"runAt": 5}, "states.a.entry.task.runAt", "expected an ISO-8601 string"),
        (
            {"runAt": "2026-01-01T00:00:00Z", "delay": 5},
            "states.a.entry.task",
            "a task takes `runAt` or `delay`, not both",
        ),
        (
            {"idempotencyKey": 5},
            "states.a.entry.task.idempotencyKey",
            "an idempotency key must be a string or an `$expr` object, not a number",
        ),
        (
            {"completionEvent": ""},
            "states.a.entry.task.completionEvent",
            "must be a non-empty event type",
        ),
    ],
)
def test_task_fields(fields: dict[str, Any], path: str, message: str) -> None:
    assert_only_error(machine({"a": {"entry": _task(**fields)}}), path, message)
