"""The Mermaid generator: golden diagrams, then one rule per test.

Whether Mermaid itself reads these diagrams as intended is checked with
Mermaid's own parser in ``tests/e2e/test_graph_mermaid.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from statefleet.engine.graph import to_mermaid
from statefleet.engine.spec import WorkflowSpec, validate_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EDGE = re.compile(r"^    (\S+) --> (\S+) : (.*)$")


def graph(raw: dict[str, Any]) -> str:
    return to_mermaid(validate_spec(raw))


def edges(diagram: str) -> list[tuple[str, str, str]]:
    """The transition edges: top-level lines, so neither ``[*]`` arrows nor declarations."""
    return [(m[1], m[2], m[3]) for line in diagram.splitlines() if (m := EDGE.match(line))]


def machine(states: dict[str, Any], **root: Any) -> dict[str, Any]:
    return {"id": "m", "initial": next(iter(states)), "states": states, **root}


HELLO_DIAGRAM = """\
stateDiagram-v2
    [*] --> hello_workflow
    state "hello-workflow" as hello_workflow {
        state "start" as start
        state "notify" as notify
        state "done" as done
        [*] --> start
        done --> [*]
    }
    start --> notify : WORKFLOW_START
    notify --> done : HELLO_SENT
"""


def test_hello_workflow() -> None:
    raw = json.loads((FIXTURES / "hello-workflow.json").read_text())
    assert graph(raw) == HELLO_DIAGRAM


def test_order_workflow_matches_its_golden_file() -> None:
    """Regenerate with ``statefleet graph tests/fixtures/order-workflow.json``."""
    raw = json.loads((FIXTURES / "order-workflow.json").read_text())
    assert graph(raw) == (FIXTURES / "order-workflow.mmd").read_text()


def test_nested_compound_states_are_boxes_with_their_own_initial_arrow() -> None:
    diagram = graph(
        machine(
            {
                "outer": {
                    "initial": "inner",
                    "states": {
                        "inner": {
                            "initial": "leaf",
                            "states": {"leaf": {}, "end": {"type": "final"}},
                        },
                        "other": {},
                    },
                },
            }
        )
    )
    assert diagram == (
        "stateDiagram-v2\n"
        "    [*] --> m\n"
        '    state "m" as m {\n'
        '        state "outer" as outer {\n'
        '            state "inner" as outer__inner {\n'
        '                state "leaf" as outer__inner__leaf\n'
        '                state "end" as outer__inner__end\n'
        "                [*] --> outer__inner__leaf\n"
        "                outer__inner__end --> [*]\n"
        "            }\n"
        '            state "other" as outer__other\n'
        "            [*] --> outer__inner\n"
        "        }\n"
        "        [*] --> outer\n"
        "    }\n"
    )


def test_parallel_regions_are_separated_and_each_entered_at_once() -> None:
    diagram = graph(
        machine(
            {
                "p": {
                    "type": "parallel",
                    "states": {
                        "r1": {"initial": "a", "states": {"a": {"on": {"GO": "b"}}, "b": {}}},
                        "r2": {"initial": "c", "states": {"c": {}}},
                        "flag": {},
                    },
                }
            }
        )
    )
    assert (
        '        state "p" as p {\n'
        '            state "r1" as p__r1 {\n'
        '                state "a" as p__r1__a\n'
        '                state "b" as p__r1__b\n'
        "                [*] --> p__r1__a\n"
        "            }\n"
        "            [*] --> p__r1\n"
        "            --\n"
        '            state "r2" as p__r2 {\n'
        '                state "c" as p__r2__c\n'
        "                [*] --> p__r2__c\n"
        "            }\n"
        "            [*] --> p__r2\n"
        "            --\n"
        '            state "flag" as p__flag\n'
        "            [*] --> p__flag\n"
        "        }\n"
    ) in diagram
    assert edges(diagram) == [("p__r1__a", "p__r1__b", "GO")]


def test_a_parallel_root_is_a_box_of_regions() -> None:
    diagram = graph(
        {
            "id": "m",
            "type": "parallel",
            "states": {"a": {"initial": "x", "states": {"x": {}}}, "b": {}},
        }
    )
    assert '    state "m" as m {\n' in diagram
    assert "        --\n" in diagram
    assert "        [*] --> a\n" in diagram
    assert "        [*] --> b\n" in diagram


LABEL_CASES = [
    pytest.param({"on": {"GO": "b"}}, "GO", id="event"),
    pytest.param({"on": {"*": "b"}}, "*", id="wildcard"),
    pytest.param({"on": {"order.*": "b"}}, "order.*", id="partial-wildcard"),
    pytest.param({"on": {"GO": {"target": "b", "guard": "ok"}}}, "GO [ok]", id="named-guard"),
    pytest.param({"on": {"GO": {"target": "b", "cond": "ok"}}}, "GO [ok]", id="cond-alias"),
    pytest.param(
        {"on": {"GO": {"target": "b", "guard": {"type": "ok", "params": {"n": 1}}}}},
        "GO [ok]",
        id="guard-with-params",
    ),
    pytest.param(
        {"on": {"GO": {"target": "b", "guard": {"type": "not", "guard": "ok"}}}},
        "GO [!ok]",
        id="not",
    ),
    pytest.param(
        {
            "on": {
                "GO": {
                    "target": "b",
                    "guard": {
                        "type": "and",
                        "guards": [
                            "ok",
                            {"type": "or", "guards": ["ok", {"expr": "context.n > 1"}]},
                        ],
                    },
                }
            }
        },
        "GO [ok && (ok || (context.n > 1))]",
        id="and-or-expr",
    ),
    pytest.param(
        {"on": {"GO": {"target": "b", "guard": {"expr": "context.n >\n   1"}}}},
        "GO [context.n > 1]",
        id="expr-whitespace-collapsed",
    ),
    pytest.param(
        {"on": {"GO": {"target": "b", "guard": {"expr": "context.total + " * 5 + "1 > 2"}}}},
        "GO [context.total + context.total + context…]",
        id="long-expr-shortened",
    ),
    pytest.param({"after": {"5000": "b"}}, "after 5000ms", id="after-ms"),
    pytest.param({"after": {"PT5M": "b"}}, "after PT5M", id="after-iso"),
    pytest.param({"always": {"target": "b", "guard": "ok"}}, "always [ok]", id="always"),
    pytest.param(
        {"initial": "x", "states": {"x": {"type": "final"}}, "onDone": "b"}, "done", id="onDone"
    ),
]


@pytest.mark.parametrize(("state_a", "label"), LABEL_CASES)
def test_edge_labels(state_a: dict[str, Any], label: str) -> None:
    raw = machine({"a": state_a, "b": {}}, guards={"ok": "true"})
    assert edges(graph(raw)) == [("a", "b", label)]


def test_edges_follow_document_order_on_after_always_done_per_state() -> None:
    raw = machine(
        {
            "a": {
                "initial": "x",
                "states": {"x": {"on": {"IN": "y"}}, "y": {"type": "final"}},
                "onDone": "c",
                "always": {"target": "c", "guard": {"expr": "false"}},
                "after": {"10": "c"},
                "on": {"Z": "c", "A": "b"},
            },
            "b": {"on": {"B": "a"}},
            "c": {},
        }
    )
    assert edges(graph(raw)) == [
        ("a", "c", "Z"),
        ("a", "b", "A"),
        ("a", "c", "after 10ms"),
        ("a", "c", "always [false]"),
        ("a", "c", "done"),
        ("a__x", "a__y", "IN"),
        ("b", "a", "B"),
    ]


def test_targetless_transitions_are_not_drawn_but_self_targets_are() -> None:
    raw = machine(
        {
            "a": {
                "on": {
                    "NOTE": {"actions": [{"type": "assign", "path": "n", "value": 1}]},
                    "AGAIN": "a",
                    "RESET": {"target": "a", "reenter": True},
                },
                "after": {"100": {"actions": [{"type": "assign", "path": "n", "value": 2}]}},
            }
        },
        on={"ANYWHERE": {"actions": [{"type": "assign", "path": "n", "value": 3}]}},
    )
    assert edges(graph(raw)) == [("a", "a", "AGAIN"), ("a", "a", "RESET")]


def test_targets_resolve_as_xstate_resolves_them() -> None:
    raw = machine(
        {
            "a": {
                "on": {
                    "SIBLING_CHILD": "b.d",
                    "BY_ID": "#dee",
                    "BY_ID_CHILD": "#bee.c",
                    "BY_MACHINE_ID": "#m.a",
                }
            },
            "b": {
                "id": "bee",
                "initial": "c",
                "states": {"c": {}, "d": {"id": "dee"}},
                "on": {"CHILD": ".d"},
            },
        },
        on={"ROOT_CHILD": ".b.c"},
    )
    assert edges(graph(raw)) == [
        ("m", "b__c", "ROOT_CHILD"),
        ("a", "b__d", "SIBLING_CHILD"),
        ("a", "b__d", "BY_ID"),
        ("a", "b__c", "BY_ID_CHILD"),
        ("a", "a", "BY_MACHINE_ID"),
        ("b", "b__d", "CHILD"),
    ]


def test_a_transition_with_several_targets_draws_one_edge_each() -> None:
    raw = machine(
        {
            "idle": {"on": {"GO": {"target": ["#x2", "#y2"]}}},
            "p": {
                "type": "parallel",
                "states": {
                    "x": {"initial": "x1", "states": {"x1": {}, "x2": {"id": "x2"}}},
                    "y": {"initial": "y1", "states": {"y1": {}, "y2": {"id": "y2"}}},
                },
            },
        }
    )
    assert edges(graph(raw)) == [("idle", "p__x__x2", "GO"), ("idle", "p__y__y2", "GO")]


def test_identical_edges_are_drawn_once() -> None:
    raw = machine({"a": {"on": {"GO": ["b", "b"]}}, "b": {}})
    assert edges(graph(raw)) == [("a", "b", "GO")]


def declared(diagram: str) -> dict[str, str]:
    """Mermaid id -> label of every ``state "label" as id`` line."""
    found = re.findall(r'state "([^"]*)" as (\S+)', diagram)
    return {mermaid_id: label for label, mermaid_id in found}


def test_ids_are_sanitised_paths_and_labels_keep_the_key() -> None:
    diagram = graph(machine({"ready to-ship!": {"initial": "ünï", "states": {"ünï": {}}}}))
    assert declared(diagram) == {
        "m": "m",
        "ready_to_ship_": "ready to-ship!",
        "ready_to_ship____n_": "ünï",
    }


def test_keys_that_sanitise_alike_get_numbered_ids() -> None:
    diagram = graph(
        machine({"a-b": {"on": {"GO": "a_b"}}, "a_b": {"on": {"GO": "a b"}}, "a b": {}})
    )
    assert declared(diagram) == {"m": "m", "a_b": "a-b", "a_b_2": "a_b", "a_b_3": "a b"}
    assert edges(diagram) == [("a_b", "a_b_2", "GO"), ("a_b_2", "a_b_3", "GO")]


@pytest.mark.parametrize("word", ["state", "note", "Note", "CLASS", "classDef", "root", "style"])
def test_words_mermaid_reserves_are_not_used_as_ids(word: str) -> None:
    diagram = graph(machine({word: {"on": {"GO": "other"}}, "other": {}}))
    assert declared(diagram)[f"{word}_2"] == word
    assert edges(diagram) == [(f"{word}_2", "other", "GO")]


def test_ids_never_shadow_the_start_and_end_nodes_mermaid_makes_for_boxes() -> None:
    diagram = graph(
        machine(
            {
                "p_start": {"on": {"GO": "p"}},
                "p": {"initial": "x", "states": {"x": {}}},
                "root_end": {},
            }
        )
    )
    ids = declared(diagram)
    assert ids["p_start_2"] == "p_start"
    assert ids["root_end_2"] == "root_end"
    assert ids["p"] == "p"


def test_a_machine_id_is_an_id_too() -> None:
    diagram = graph({"id": "state", "initial": "state", "states": {"state": {}}})
    assert declared(diagram) == {"state_2": "state", "state_3": "state"}
    assert diagram.startswith("stateDiagram-v2\n    [*] --> state_2\n")


def test_state_labels_escape_quotes_and_html_as_entities() -> None:
    """Mermaid 11 renders labels as HTML; its own ``#quot;`` codes stay undecoded."""
    diagram = graph(machine({'say "hi"; <b>#1 & more': {}}))
    assert 'state "say &quot;hi&quot;; &lt;b>&num;1 &amp; more" as say__hi____b__1___more' in (
        diagram
    )


def test_edge_labels_cannot_hold_a_semicolon_or_a_tag() -> None:
    """``;`` ends a Mermaid statement and every HTML entity ends in one: look-alikes instead.

    Event types cannot hold ``;`` (docs/spec.md, "Identifiers"); guards can.
    """
    raw = machine(
        {
            "a": {"on": {"x:y": {"target": "b", "guard": {"expr": "'a;b' != \"<b>\" && 1 < 2"}}}},
            "b": {},
        }
    )
    label = "x:y ['a\u037eb' != \"<\u200bb>\" && 1 < 2]"
    assert edges(graph(raw)) == [("a", "b", label)]


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("ready_to_ship", "ready_to_ship"),
        ("__init__", r"\_\_init\_\_"),
        ("_draft", r"\_draft"),
        ("one*", "one*"),
        ("*star*", r"\*star\*"),
        ("back\\slash", r"back\\slash"),
    ],
)
def test_labels_escape_what_markdown_would_format(key: str, label: str) -> None:
    diagram = graph(machine({key: {}}))
    assert f'state "{label}" as' in diagram


def test_box_titles_are_not_markdown_and_keep_their_underscores() -> None:
    diagram = graph(machine({"__init__": {"initial": "x", "states": {"x": {}}}}))
    assert 'state "__init__" as __init__ {' in diagram


def test_a_guard_that_multiplies_is_not_italic() -> None:
    raw = machine(
        {"a": {"on": {"GO": {"target": "b", "guard": {"expr": "2 * 3 * 4 > 1"}}}}, "b": {}}
    )
    assert edges(graph(raw)) == [("a", "b", r"GO [2 \* 3 \* 4 > 1]")]


PAYMENT_REGION: dict[str, Any] = {
    "initial": "charging",
    "states": {"charging": {"on": {"PAID": "paid"}}, "paid": {"type": "final"}},
}


def packing_region(**extra: Any) -> dict[str, Any]:
    return {
        "initial": "picking",
        "states": {
            "picking": {"on": {"PICKED": "packing"}},
            "packing": {"initial": "boxing", "states": {"boxing": {}}, **extra},
        },
    }


def test_a_region_whose_box_would_crash_mermaid_is_drawn_without_it() -> None:
    """mermaid-js/mermaid#4052: a region box holding an edge to a compound state."""
    diagram = graph(
        machine(
            {"p": {"type": "parallel", "states": {"pay": PAYMENT_REGION, "ship": packing_region()}}}
        )
    )
    assert "p__pay" not in declared(diagram)
    assert "p__ship" not in declared(diagram)
    assert (
        '        state "p" as p {\n'
        '            state "charging" as p__pay__charging\n'
        '            state "paid" as p__pay__paid\n'
        "            [*] --> p__pay__charging\n"
        "            p__pay__paid --> [*]\n"
        "            --\n"
        '            state "picking" as p__ship__picking\n'
        '            state "packing" as p__ship__packing {\n'
    ) in diagram
    assert ("p__ship__picking", "p__ship__packing", "PICKED") in edges(diagram)


def test_a_region_with_a_transition_across_its_border_keeps_its_box() -> None:
    raw = machine(
        {
            "p": {
                "type": "parallel",
                "states": {"pay": PAYMENT_REGION, "ship": packing_region(on={"LOST": "#m.gone"})},
            },
            "gone": {},
        }
    )
    assert set(declared(graph(raw))) >= {"p__pay", "p__ship"}


def test_a_region_that_a_transition_targets_keeps_its_box() -> None:
    raw = machine(
        {
            "p": {
                "type": "parallel",
                "states": {"pay": PAYMENT_REGION, "ship": packing_region()},
                "on": {"RESTART_PAYMENT": ".pay"},
            }
        }
    )
    ids = declared(graph(raw))
    assert "p__pay" in ids  # targeted: needs its box
    assert "p__ship" not in ids  # would crash Mermaid


def test_an_unresolvable_target_is_a_value_error() -> None:
    spec = WorkflowSpec.model_validate(machine({"a": {"on": {"GO": "nowhere"}}}))
    with pytest.raises(ValueError, match="nowhere"):
        to_mermaid(spec)
