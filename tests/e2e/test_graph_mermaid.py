"""``statefleet graph`` output read back by Mermaid's own parser.

Golden files only show that the generator is stable; this shows that Mermaid
reads what we meant: every state once, with its key as label, inside the
right box, and every transition with its whole label (a stray ``;`` would
cut it short, a reserved word would drop a state). The parser is the npm
package ``mermaid`` under Node, with jsdom standing in for the browser
(``mermaid/parse.mjs``); ``npm ci`` runs on first use. Rendering (layout) is
not checked here, as it needs a real browser.

Without Node the module skips on a developer machine and fails under
``CI=true``.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statefleet.engine.graph import to_mermaid
from statefleet.engine.spec import validate_spec
from tests.required import unavailable

HERE = Path(__file__).resolve().parent
CHECKER = HERE / "mermaid"
FIXTURES = HERE.parent / "fixtures"
PSEUDO_SHAPES = frozenset({"stateStart", "stateEnd", "divider"})
MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("the Mermaid parser", "node and npm are not on PATH")
        raise AssertionError("unreachable")
    if not (CHECKER / "node_modules" / "mermaid").is_dir():
        try:
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=CHECKER,
                check=True,
                capture_output=True,
                timeout=600,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            unavailable("the Mermaid parser", f"npm ci failed: {exc}")
    return node


def mermaid_parse(node: str, diagrams: list[str]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [node, str(CHECKER / "parse.mjs")],
        input=json.dumps(diagrams),
        capture_output=True,
        text=True,
        cwd=CHECKER,
        timeout=300,
        check=True,
    )
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return results


# --- what the diagram should say, from the spec -----------------------------


def state_paths(raw: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], frozenset[int]]]:
    """Each state's key path from the machine id, with the positions of region keys.

    A region (a child of a parallel state) may be drawn without its box, so
    its key may be missing from the path Mermaid reports.
    """

    def walk(
        node: dict[str, Any], path: tuple[str, ...], regions: frozenset[int]
    ) -> Iterator[tuple[tuple[str, ...], frozenset[int]]]:
        yield path, regions
        parallel = node.get("type") == "parallel"
        for key, child in (node.get("states") or {}).items():
            child_regions = regions | {len(path)} if parallel else regions
            yield from walk(child, (*path, key), frozenset(child_regions))

    yield from walk(raw, (raw["id"],), frozenset())


def drawn_as(mermaid_path: tuple[str, ...], path: tuple[str, ...], regions: frozenset[int]) -> bool:
    """True when ``mermaid_path`` is ``path`` with nothing but region keys left out."""
    if mermaid_path[-1:] != path[-1:]:
        return False
    i = 0
    for position, key in enumerate(path):
        if i < len(mermaid_path) and mermaid_path[i] == key:
            i += 1
        elif position not in regions:
            return False
    return i == len(mermaid_path)


def markdown_text(label: str) -> str:
    """What Markdown shows for ``label``: backslash escapes removed."""
    return MARKDOWN_ESCAPE.sub(r"\1", label)


def expected_edge_labels(diagram: str) -> list[str]:
    """The full label of every transition line, as Markdown shows it."""
    labels = []
    for line in diagram.splitlines():
        if line.startswith("    ") and not line.startswith("     ") and " : " in line:
            labels.append(markdown_text(line.split(" : ", 1)[1]))
    return labels


def check(raw: dict[str, Any], diagram: str, result: dict[str, Any]) -> None:
    assert result["ok"], f"{result.get('error')}\n{diagram}"
    assert result["type"] == "stateDiagram"
    nodes = {n["id"]: n for n in result["nodes"]}
    states = [n for n in result["nodes"] if n["shape"] not in PSEUDO_SHAPES]

    def label_path(node: dict[str, Any]) -> tuple[str, ...]:
        path = [node["label"]]
        parent = node["parent"]
        while parent is not None:
            if nodes[parent]["shape"] != "divider":
                path.append(nodes[parent]["label"])
            parent = nodes[parent]["parent"]
        return tuple(reversed(path))

    expected = list(state_paths(raw))
    drawn_labels = Counter(n["label"] for n in states)
    assert drawn_labels - Counter(p[-1] for p, _ in expected) == Counter(), diagram
    # Only regions (drawn as a bare ``--`` section) may be missing.
    region_labels = Counter(p[-1] for p, r in expected if len(p) - 1 in r)
    missing = Counter(p[-1] for p, _ in expected) - drawn_labels
    assert missing - region_labels == Counter(), diagram
    for state in states:
        drawn = label_path(state)
        assert any(drawn_as(drawn, p, r) for p, r in expected), (drawn, diagram)

    edges = [e for e in result["edges"] if nodes[e["start"]]["shape"] not in PSEUDO_SHAPES]
    edges = [e for e in edges if nodes[e["end"]]["shape"] not in PSEUDO_SHAPES]
    assert [e["label"] for e in edges] == expected_edge_labels(diagram), diagram


# --- the specs --------------------------------------------------------------


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


TRICKY: list[dict[str, Any]] = [
    {
        "id": "root",
        "initial": "state",
        "states": {
            "state": {"on": {"GO": "Note"}},
            "Note": {"on": {"GO": "CLASS"}},
            "CLASS": {"on": {"GO": "p_start"}},
            "p_start": {"on": {"GO": "p"}},
            "p": {"initial": "root_start", "states": {"root_start": {}}},
        },
    },
    {
        "id": "m",
        "initial": 'say "hi"; <b>#1',
        "states": {
            'say "hi"; <b>#1': {
                "on": {
                    "semi:colon": {"target": "x-y", "guard": {"expr": "'a;b' != \"<#>\""}},
                    "*": "x_y",
                }
            },
            "x-y": {"after": {"PT1M": "x y"}},
            "x_y": {"always": {"target": "x y", "guard": {"expr": "1 < 2 && true"}}},
            "x y": {"type": "final"},
        },
    },
    {
        "id": "par",
        "type": "parallel",
        "states": {
            "pay": {
                "initial": "charging",
                "states": {"charging": {"on": {"PAID": "paid"}}, "paid": {"type": "final"}},
            },
            "ship": {
                "initial": "picking",
                "states": {
                    "picking": {"on": {"PICKED": "packing"}},
                    "packing": {
                        "initial": "boxing",
                        "states": {
                            "boxing": {"on": {"BOXED": "sealed"}},
                            "sealed": {"type": "final"},
                        },
                        "onDone": "picking",
                    },
                },
            },
            "flag": {},
        },
    },
]

KEY_POOL = [
    "a",
    "state",
    "Note",
    "root",
    "p_start",
    "x-y",
    "x_y",
    "x y",
    'q"t',
    "semi;colon",
    "<b>",
    "h#sh",
    "ünï",
    "end",
    "default",
    "a__b",
]
#: Event types follow the identifier rule (docs/spec.md), so only ``.`` ``:`` ``-`` ``_``.
EVENT_POOL = ["GO", "*", "order.*", "x:y", "_a.b-c"]


def random_spec(rng: random.Random) -> dict[str, Any]:
    """A small statechart with hostile keys and every kind of transition."""
    nodes: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def build(path: tuple[str, ...], depth: int) -> dict[str, Any]:
        keys = rng.sample(KEY_POOL, rng.randint(1, 3))
        states: dict[str, Any] = {}
        for key in keys:
            node: dict[str, Any] = {}
            kind = rng.choice(
                ["atomic", "atomic", "final", "compound", "parallel"][: 5 if depth < 3 else 3]
            )
            if kind == "final":
                node["type"] = "final"
            elif kind in ("compound", "parallel"):
                node["states"] = build((*path, key), depth + 1)
                if kind == "parallel":
                    node["type"] = "parallel"
                else:
                    node["initial"] = next(iter(node["states"]))
            states[key] = node
            nodes.append(((*path, key), node))
        return states

    raw: dict[str, Any] = {"id": rng.choice(["m", "state", "order-flow"]), "states": build((), 0)}
    raw["initial"] = next(iter(raw["states"]))
    for _, node in nodes:
        if node.get("type") == "final":
            continue
        for _ in range(rng.randint(0, 3)):
            target = "#" + ".".join((raw["id"], *rng.choice(nodes)[0]))
            guard = rng.choice([None, {"expr": "context.n > 1 && 'a;b' != \"<#>\""}])
            transition: dict[str, Any] = {"target": target}
            if guard is not None:
                transition["guard"] = guard
            where = rng.choice(["on", "on", "after", "always", "onDone"])
            if where == "on":
                node.setdefault("on", {})[rng.choice(EVENT_POOL)] = transition
            elif where == "after":
                node.setdefault("after", {})[rng.choice(["5000", "PT1M"])] = transition
            elif where == "always":
                node["always"] = transition
            elif "states" in node:
                node["onDone"] = transition
    return raw


def cases() -> list[dict[str, Any]]:
    rng = random.Random(20240501)
    return [
        fixture("hello-workflow.json"),
        fixture("order-workflow.json"),
        *TRICKY,
        *(random_spec(rng) for _ in range(60)),
    ]


def test_mermaid_reads_every_state_box_and_label_as_drawn(node: str) -> None:
    specs = cases()
    diagrams = [to_mermaid(validate_spec(raw)) for raw in specs]
    results = mermaid_parse(node, diagrams)
    for raw, diagram, result in zip(specs, diagrams, results, strict=True):
        check(raw, diagram, result)


def test_the_checker_rejects_broken_diagrams(node: str) -> None:
    """The check can fail: Mermaid rejects some input outright and misreads the rest."""
    broken = [
        "stateDiagram-v2\n    a --> state : GO\n",
        'stateDiagram-v2\n    state "a" as a {\n        [*] --> b\n',
    ]
    assert [r["ok"] for r in mermaid_parse(node, broken)] == [False, False]
    raw = {"id": "m", "initial": "a", "states": {"a": {"on": {"GO": "b"}}, "b": {}}}
    truncated = to_mermaid(validate_spec(raw)).replace(": GO", ": G;O")
    with pytest.raises(AssertionError):
        check(raw, truncated, mermaid_parse(node, [truncated])[0])
    quoted = {"id": "m", "initial": 'q"t', "states": {'q"t': {}}}
    mermaid_code = to_mermaid(validate_spec(quoted)).replace("&quot;", "#quot;")
    with pytest.raises(AssertionError):
        check(quoted, mermaid_code, mermaid_parse(node, [mermaid_code])[0])
