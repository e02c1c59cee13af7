"""A workflow spec drawn as a Mermaid ``stateDiagram-v2``, for people to read.

The diagram is documentation, not a second interpreter: it shows the state
tree and every transition that can change the state value, and nothing about
actions. Choices made where Mermaid and XState do not line up:

* The machine is the outermost box, labelled with the machine id, so that
  transitions declared on the root (a machine-wide ``CANCEL``) have a box to
  start from. ``[*] -->`` marks the initial child at every level; in a
  parallel state each region sits in its own ``--`` section with its own
  ``[*]`` arrow, since all regions are entered together. A final state gets
  ``--> [*]`` inside its parent's box.
* Mermaid ids are state paths joined by ``__``, every character outside
  ``[A-Za-z0-9_]`` replaced by ``_``; the state's key is the label. An id that
  Mermaid's grammar reserves (``state``, ``note``, ``root``, the
  ``<box>_start``/``<box>_end`` nodes it makes for ``[*]``) or that two keys
  sanitise to gets a ``_2``, ``_3``... suffix.
* Edge labels: the event type (``*`` included); ``after 5000ms`` for an
  integer delay and the ISO-8601 duration as written (``after PT5M``);
  ``always`` for eventless transitions; ``done`` for ``onDone``. A guard
  follows in brackets: its name, ``!g``, ``a && b``, ``a || b``, or an inline
  CEL expression shortened to 40 characters.
* Targetless transitions are omitted: they run actions but never change the
  state value, which is what the diagram is about. A transition whose target
  is its own state is a real transition and is drawn as a self-loop.
* Boxes are declared first and transitions after all of them, at the top
  level: Mermaid puts a state in the box where its id first appears, so an
  edge written inside a box could pull a later state into it.
* Mermaid's renderer crashes ("Cannot set properties of undefined (setting
  'rank')", mermaid-js/mermaid#4052, open) on a region box inside a ``--``
  section when a transition inside the region starts or ends at a compound
  state and no transition crosses the region's border. Such a region is
  drawn without its own box: its states sit directly in the section, whose
  dashed outline still marks the region; so are its sibling regions that no
  transition starts or ends at, so that the regions of one state look alike.
* Labels are written for Mermaid 11, which renders them as Markdown and HTML
  and does not decode its own ``#code;`` entities in state diagrams. Inside a
  state's quoted label, ``&``, ``"``, ``<`` and ``#`` become HTML entities. An
  edge label ends at the first ``;`` and cannot hold an entity, so ``;``
  becomes U+037E (drawn the same) and a ``<`` that would open a tag gets a
  zero-width space after it. Edge labels and the labels of plain states are
  Markdown, box titles are not: in the former, backslashes, paired ``*`` and
  underscores outside words are backslash-escaped, so that ``__init__`` does
  not turn bold.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from statefleet.engine.record import record
from statefleet.engine.spec.models import (
    GuardExpr,
    GuardLogic,
    GuardNot,
    GuardRef,
    StateNodeSpec,
    Transition,
    WorkflowSpec,
)
from statefleet.engine.spec.targets import StateIndex

__all__ = ["ACTIVE_CLASS_DEF", "to_mermaid"]

#: How ``to_mermaid(spec, active=...)`` draws the states an instance is in.
ACTIVE_CLASS_DEF: Final = "fill:#fde68a,stroke:#b45309,stroke-width:3px,color:#111827"

_INDENT: Final = "    "
_GUARD_EXPR_MAX: Final = 40
_UNSAFE_ID_CHARS: Final = re.compile(r"[^A-Za-z0-9_]")
# Words that Mermaid's state-diagram lexer reads as keywords where an id
# should stand (checked against mermaid 11's parser; it ignores case), and
# "root", the id Mermaid gives the diagram's top-level document.
_RESERVED_IDS: Final = frozenset(
    {"class", "classdef", "click", "default", "href", "note", "root", "scale", "state", "style"}
)
_WHITESPACE: Final = re.compile(r"\s")
# An underscore that is not inside a word can open or close Markdown emphasis.
_LOOSE_UNDERSCORE: Final = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_SEMICOLON_LOOKALIKE: Final = "\u037e"  # GREEK QUESTION MARK, drawn as ";"
# "<" before these starts an HTML tag in a rendered label.
_TAG_OPEN: Final = re.compile(r"<(?=[A-Za-z/!?])")
_STATE_LABEL_ESCAPES: Final = str.maketrans(
    {"&": "&amp;", '"': "&quot;", "<": "&lt;", "#": "&num;"}
)


@dataclass(eq=False)
class _Node:
    """One state of the spec, linked into a tree the renderer can walk."""

    key: str
    spec: StateNodeSpec
    parent: _Node | None
    path: tuple[str, ...]
    children: dict[str, _Node] = field(default_factory=dict)
    mermaid_id: str = ""

    @property
    def is_box(self) -> bool:
        """A compound or parallel state with children, drawn as ``state ... { }``."""
        return bool(self.children) and self.spec.kind in ("compound", "parallel")

    def is_inside(self, ancestor: _Node) -> bool:
        """True for a proper descendant of ``ancestor``."""
        return self.path[: len(ancestor.path)] == ancestor.path and self is not ancestor


@record
class _Edge:
    source: _Node
    target: _Node
    label: str


def to_mermaid(spec: WorkflowSpec, active: object = None) -> str:
    """Renders ``spec`` as Mermaid ``stateDiagram-v2`` source, ending in a newline.

    The output depends only on the spec (and ``active``), in document order, so it
    can be committed beside the spec and diffed.

    Args:
        spec: the machine.
        active: an instance's state value (XState's shape: ``"a"``,
            ``{"a": "b"}``, ``{"p": {"r1": "x", "r2": "y"}}``); its atomic states
            get the class ``active`` (``ACTIVE_CLASS_DEF``), so a reader sees where
            the instance is. Only Mermaid knows the ids it draws, so the
            highlighting travels in the source rather than being guessed later.

    Raises:
        ValueError: a transition target does not resolve (specs that passed
            ``validate_spec`` never raise), or ``active`` is not a state value of
            this machine (the message names the part that is not).
    """
    root = _build_tree(spec)
    _assign_ids(root)
    highlighted = _active_leaves(root, active) if active is not None else []
    edges = _edges(root, StateIndex.build(spec))
    unboxed = _regions_to_unbox(root, edges)
    lines = ["stateDiagram-v2", f"{_INDENT}[*] --> {root.mermaid_id}"]
    lines.extend(_declare(root, 1, unboxed))
    seen: set[str] = set()
    for edge in edges:
        line = f"{_INDENT}{edge.source.mermaid_id} --> {edge.target.mermaid_id} : {edge.label}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    if highlighted:
        lines.append(f"{_INDENT}classDef active {ACTIVE_CLASS_DEF}")
        lines.append(f"{_INDENT}class {','.join(n.mermaid_id for n in highlighted)} active")
    return "\n".join(lines) + "\n"


def _active_leaves(root: _Node, value: object) -> list[_Node]:
    """The atomic states a state value names, in document order.

    Raises:
        ValueError: ``value`` is not a state value of this machine.
    """
    found: list[_Node] = []

    def walk(node: _Node, value: object, where: str) -> None:
        if isinstance(value, str):
            child = node.children.get(value)
            if child is None:
                raise ValueError(f"{where}: {value!r} is not a child of {node.key!r}")
            if child.children:
                raise ValueError(f"{where}: {value!r} is a compound state, not a leaf")
            found.append(child)
            return
        if not isinstance(value, dict) or not value:
            raise ValueError(f"{where}: a state value is a string or a non-empty object")
        for key, inner in value.items():
            child = node.children.get(key)
            if child is None or not child.children:
                raise ValueError(f"{where}.{key}: {key!r} is not a compound child of {node.key!r}")
            walk(child, inner, f"{where}.{key}")

    walk(root, value, "active")
    return found


# --- the tree -----------------------------------------------------------------


def _build_tree(spec: WorkflowSpec) -> _Node:
    root = _Node(key=spec.id, spec=spec, parent=None, path=())
    stack = [root]
    while stack:
        node = stack.pop()
        for key, child_spec in (node.spec.states or {}).items():
            child = _Node(key=key, spec=child_spec, parent=node, path=(*node.path, key))
            node.children[key] = child
            stack.append(child)
    return root


def _walk(node: _Node) -> Iterator[_Node]:
    """Pre-order, children in document order: the order XState reads a config in."""
    yield node
    for child in node.children.values():
        yield from _walk(child)


# --- Mermaid ids --------------------------------------------------------------


def _base_id(node: _Node) -> str:
    parts = node.path or (node.key,)
    return "__".join(_UNSAFE_ID_CHARS.sub("_", part) or "_" for part in parts)


def _assign_ids(root: _Node) -> None:
    """Gives every node a unique Mermaid id that no node Mermaid makes can shadow.

    Mermaid names the ``[*]`` pseudo-states of a box ``<box id>_start`` and
    ``<box id>_end``. Those names are reserved, and ids reassigned, until no
    state id equals one of them.
    """
    nodes = list(_walk(root))
    reserved = {"root_start", "root_end"}
    while True:
        used: set[str] = set()
        for node in nodes:
            base = _base_id(node)
            candidate, suffix = base, 1
            while candidate in used or candidate in reserved or candidate.lower() in _RESERVED_IDS:
                suffix += 1
                candidate = f"{base}_{suffix}"
            node.mermaid_id = candidate
            used.add(candidate)
        pseudo = {f"{n.mermaid_id}_{end}" for n in nodes if n.is_box for end in ("start", "end")}
        clashes = pseudo & used
        if not clashes:
            return
        reserved |= clashes


# --- transitions --------------------------------------------------------------


def _edges(root: _Node, index: StateIndex) -> list[_Edge]:
    nodes = {node.path: node for node in _walk(root)}
    edges: list[_Edge] = []
    for node in nodes.values():
        spec = node.spec
        groups: list[tuple[str, tuple[Transition, ...]]] = list(spec.on.items())
        groups.extend((_after_label(delay), ts) for delay, ts in spec.after.items())
        groups.append(("always", spec.always))
        groups.append(("done", spec.on_done))
        for event_label, transitions in groups:
            for transition in transitions:
                label = event_label
                if transition.guard is not None:
                    label += f" [{_guard_text(transition.guard)}]"
                edges.extend(
                    _Edge(node, nodes[index.resolve(node.path, target)], _edge_label(label))
                    for target in transition.target
                )
    return edges


def _after_label(delay: str) -> str:
    return f"after {delay}ms" if delay.isdigit() else f"after {delay}"


def _guard_text(guard: object, nested: bool = False) -> str:
    if isinstance(guard, GuardRef):
        return guard.type
    if isinstance(guard, GuardExpr):
        text = " ".join(guard.expr.split())
        if len(text) > _GUARD_EXPR_MAX:
            text = text[: _GUARD_EXPR_MAX - 1] + "…"
        return f"({text})" if nested and " " in text else text
    if isinstance(guard, GuardNot):
        return "!" + _guard_text(guard.guard, nested=True)
    if isinstance(guard, GuardLogic):
        joiner = " && " if guard.type == "and" else " || "
        text = joiner.join(_guard_text(g, nested=True) for g in guard.guards)
        return f"({text})" if nested and len(guard.guards) > 1 else text
    raise TypeError(f"not a guard: {guard!r}")


def _markdown_safe(text: str) -> str:
    """Backslash-escapes what Mermaid 11's Markdown labels would read as formatting."""
    text = text.replace("\\", "\\\\")
    if text.count("*") > 1:
        text = text.replace("*", "\\*")
    return _LOOSE_UNDERSCORE.sub(r"\\_", text)


def _state_label(node: _Node) -> str:
    """A key as the text of ``state "..." as id``, where HTML entities work.

    Mermaid renders a plain state's label as Markdown but a box's title as
    plain HTML, where a backslash would show.
    """
    label = _WHITESPACE.sub(" ", node.key).translate(_STATE_LABEL_ESCAPES)
    return label if node.is_box else _markdown_safe(label)


def _edge_label(text: str) -> str:
    """Text after ``a --> b :``, which runs to the end of the line or the first ``;``.

    No entity can be written there (each ends in ``;``), so ``;`` becomes
    U+037E, which looks the same, and a ``<`` that would open an HTML tag is
    followed by a zero-width space.
    """
    text = _WHITESPACE.sub(" ", text).replace(";", _SEMICOLON_LOOKALIKE)
    return _markdown_safe(_TAG_OPEN.sub("<\u200b", text))


# --- state declarations -------------------------------------------------------


def _regions_to_unbox(root: _Node, edges: list[_Edge]) -> set[_Node]:
    """The regions drawn without a box (see the module docstring).

    When one region of a parallel state must lose its box, every sibling
    region that can lose it does too, so the regions of one state look alike.
    """
    unboxed: set[_Node] = set()
    for node in _walk(root):
        if node.spec.kind != "parallel":
            continue
        candidates: list[_Node] = []
        needed = False
        for region in node.children.values():
            if region.spec.kind != "compound" or not region.children:
                continue
            anchored = crossing = trigger = False
            for edge in edges:
                ends = (edge.source, edge.target)
                inside = [end.is_inside(region) for end in ends]
                anchored |= region in ends
                crossing |= inside[0] != inside[1]
                trigger |= all(inside) and any(end.is_box for end in ends)
            if not anchored:
                candidates.append(region)
                needed |= trigger and not crossing
        if needed:
            unboxed.update(candidates)
    return unboxed


def _declare(node: _Node, depth: int, unboxed: set[_Node]) -> list[str]:
    pad = _INDENT * depth
    header = f'{pad}state "{_state_label(node)}" as {node.mermaid_id}'
    if not node.is_box:
        return [header]
    if node in unboxed:
        return _contents(node, depth, unboxed)
    return [header + " {", *_contents(node, depth + 1, unboxed), pad + "}"]


def _contents(node: _Node, depth: int, unboxed: set[_Node]) -> list[str]:
    pad = _INDENT * depth
    lines: list[str] = []
    if node.spec.kind == "parallel":
        for index, region in enumerate(node.children.values()):
            if index:
                lines.append(f"{pad}--")
            lines.extend(_declare(region, depth, unboxed))
            if region not in unboxed:
                lines.append(f"{pad}[*] --> {region.mermaid_id}")
            if region.spec.kind == "final":
                lines.append(f"{pad}{region.mermaid_id} --> [*]")
        return lines
    for child in node.children.values():
        lines.extend(_declare(child, depth, unboxed))
    initial = node.children.get(node.spec.initial or "")
    if initial is not None:
        lines.append(f"{pad}[*] --> {initial.mermaid_id}")
    lines.extend(
        f"{pad}{child.mermaid_id} --> [*]"
        for child in node.children.values()
        if child.spec.kind == "final"
    )
    return lines
