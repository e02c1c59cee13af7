"""The compiled machine: state nodes and transitions with everything resolved.

Compilation turns a validated :class:`WorkflowSpec` into a tree of frozen-by-
convention objects: targets point at nodes, guards and values hold compiled
CEL, named actions are inlined with their params, ``after`` entries become
timer actions on entry/exit, and each transition's domain (its LCCA, which
depends only on the spec) is computed once instead of on every event.

Node order is XState's: a pre-order walk in document order, the root first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from statefleet.engine.cel import compile_expr
from statefleet.engine.interpreter.actions import (
    Action,
    Assign,
    CancelTaskAction,
    CancelTimerAction,
    CreateTaskAction,
    RaiseAction,
    ScheduleTimerAction,
    TaskLimits,
)
from statefleet.engine.interpreter.guards import (
    Guard,
    GuardAll,
    GuardAny,
    GuardNot,
    GuardPredicate,
)
from statefleet.engine.interpreter.values import Value, compile_value
from statefleet.engine.spec import models as m
from statefleet.engine.spec.durations import parse_delay_ms
from statefleet.engine.spec.targets import StateIndex

__all__ = ["Node", "Transition", "compile_machine", "done_event_type"]


def done_event_type(node_id: str) -> str:
    return f"xstate.done.state.{node_id}"


class Transition:
    __slots__ = (
        "actions",
        "domain",
        "event_type",
        "guard",
        "reenter",
        "source",
        "targets",
        "where",
    )

    def __init__(
        self,
        source: Node,
        event_type: str,
        targets: tuple[Node, ...],
        guard: Guard | None,
        actions: tuple[Action, ...],
        reenter: bool,
        where: str,
    ) -> None:
        self.source = source
        self.event_type = event_type
        self.targets = targets
        self.guard = guard
        self.actions = actions
        self.reenter = reenter
        self.where = where
        self.domain: Node | None = None

    def __repr__(self) -> str:
        targets = ",".join(t.id for t in self.targets)
        return f"<Transition {self.source.id} --{self.event_type}--> {targets}>"


class Node:
    """One state node. ``ancestors`` holds every proper ancestor, for O(1) descent tests."""

    __slots__ = (
        "always",
        "ancestors",
        "by_key",
        "candidates_cache",
        "children",
        "entry",
        "exit",
        "id",
        "initial",
        "key",
        "kind",
        "order",
        "output",
        "parent",
        "path",
        "transitions",
        "wildcards",
    )

    def __init__(self, key: str, node_id: str, path: tuple[str, ...], parent: Node | None) -> None:
        self.key = key
        self.id = node_id
        self.path = path
        self.parent = parent
        self.ancestors: frozenset[Node] = (
            frozenset() if parent is None else parent.ancestors | {parent}
        )
        self.order = 0
        self.kind = "atomic"
        self.children: tuple[Node, ...] = ()
        self.by_key: dict[str, Node] = {}
        self.initial: Node | None = None
        self.transitions: dict[str, tuple[Transition, ...]] = {}
        self.wildcards: tuple[str, ...] = ()
        self.always: tuple[Transition, ...] = ()
        self.entry: tuple[Action, ...] = ()
        self.exit: tuple[Action, ...] = ()
        self.output: Any = None  # a compiled Value on root-level final states that declare one
        self.candidates_cache: dict[str, tuple[Transition, ...]] = {}

    @property
    def is_atomic(self) -> bool:
        return self.kind in ("atomic", "final")

    def is_descendant_of(self, other: Node) -> bool:
        return other in self.ancestors

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def candidates(self, event_type: str) -> tuple[Transition, ...]:
        """XState's ``getCandidates``: the exact key's transitions, then matching wildcards.

        Exact transitions always come first, so they beat wildcards regardless
        of document order; when none is enabled, the wildcards are tried,
        longest descriptor first (``order.*`` before ``*``), ties in document
        order. The answer depends only on the event type, so it is memoised per
        node (bounded: only the first 256 types are kept).
        """
        cached = self.candidates_cache.get(event_type)
        if cached is not None:
            return cached
        matching = [d for d in self.wildcards if _wildcard_matches(d, event_type)]
        matching.sort(key=len, reverse=True)
        result = self.transitions.get(event_type, ()) + tuple(
            t for d in matching for t in self.transitions[d]
        )
        if len(self.candidates_cache) < 256:
            self.candidates_cache[event_type] = result
        return result

    def __repr__(self) -> str:
        return f"<Node {self.id}>"


def _wildcard_matches(descriptor: str, event_type: str) -> bool:
    if descriptor == "*":
        return True
    partial = descriptor.split(".")
    tokens = event_type.split(".")
    for index, token in enumerate(partial):
        if token == "*":
            return index == len(partial) - 1
        if index >= len(tokens) or token != tokens[index]:
            return False
    return True


def _after_order(keys: list[str]) -> list[str]:
    """Orders ``after`` keys by their delay in milliseconds.

    XState enumerates ``after`` with ``Object.keys``, which puts integer keys
    first in ascending order; with ISO-8601 durations converted to the same
    milliseconds, ascending delay is that order for every spec (two keys with
    the same delay are rejected by validation).
    """
    return sorted(keys, key=parse_delay_ms)


def _join(base: str, *parts: str | int) -> str:
    out = base
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][\w$-]*", part):
            out = f"{out}.{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


class _Compiler:
    def __init__(self, spec: m.WorkflowSpec) -> None:
        self.spec = spec
        self.index = StateIndex.build(spec)
        self.nodes_by_path: dict[tuple[str, ...], Node] = {}
        self.all_nodes: list[Node] = []

    # -- tree ---------------------------------------------------------------

    def build_tree(self) -> Node:
        root = Node(self.spec.id, self.spec.id, (), None)
        self._build(root, self.spec)
        for order, node in enumerate(root.walk()):
            node.order = order
            self.all_nodes.append(node)
        return root

    def _build(self, node: Node, spec: m.StateNodeSpec) -> None:
        self.nodes_by_path[node.path] = node
        node.kind = spec.kind
        children = []
        for key, child_spec in (spec.states or {}).items():
            path = (*node.path, key)
            child_id = child_spec.id or ".".join((self.spec.id, *path))
            child = Node(key, child_id, path, node)
            self._build(child, child_spec)
            children.append(child)
        node.children = tuple(children)
        node.by_key = {c.key: c for c in children}

    # -- behaviour ------------------------------------------------------------

    def fill(self, node: Node, spec: m.StateNodeSpec, where: str) -> None:
        if node.kind == "compound" and spec.initial is not None:
            node.initial = node.by_key[spec.initial]
        transitions: dict[str, tuple[Transition, ...]] = {}
        for event_type, items in spec.on.items():
            transitions[event_type] = self._transitions(
                node, event_type, items, _join(where, "on", event_type)
            )
        if spec.on_done:
            event_type = done_event_type(node.id)
            transitions[event_type] = self._transitions(
                node, event_type, spec.on_done, _join(where, "onDone")
            )
        entry = [self._action(a, _join(where, "entry", i)) for i, a in enumerate(spec.entry)]
        exit_ = [self._action(a, _join(where, "exit", i)) for i, a in enumerate(spec.exit)]
        for delay_key in _after_order(list(spec.after)):
            delay_ms = parse_delay_ms(delay_key)
            event_type = f"xstate.after.{delay_ms}.{node.id}"
            entry.append(ScheduleTimerAction(event_type, delay_ms))
            exit_.append(CancelTimerAction(event_type))
            found = self._transitions(
                node, event_type, spec.after[delay_key], _join(where, "after", delay_key)
            )
            transitions[event_type] = transitions.get(event_type, ()) + found
        node.transitions = transitions
        node.wildcards = tuple(k for k in transitions if "*" in k)
        node.always = self._transitions(node, "", spec.always, _join(where, "always"))
        node.entry = tuple(entry)
        node.exit = tuple(exit_)
        if node.kind == "final" and spec.has_output:
            node.output = compile_value(spec.output)
        for child in node.children:
            child_spec = (spec.states or {})[child.key]
            self.fill(child, child_spec, _join(where, "states", child.key))

    def _transitions(
        self, node: Node, event_type: str, items: tuple[m.Transition, ...], where: str
    ) -> tuple[Transition, ...]:
        out = []
        for i, item in enumerate(items):
            at = _join(where, i)
            targets = tuple(
                self.nodes_by_path[self.index.resolve(node.path, target)] for target in item.target
            )
            guard = self._guard(item.guard, _join(at, "guard")) if item.guard else None
            actions = tuple(
                self._action(a, _join(at, "actions", j)) for j, a in enumerate(item.actions)
            )
            out.append(Transition(node, event_type, targets, guard, actions, item.reenter, at))
        return tuple(out)

    def _guard(self, guard: Any, where: str) -> Guard:
        if isinstance(guard, m.GuardExpr):
            return GuardPredicate(compile_expr(guard.expr), None, f"`{guard.expr}` at {where}")
        if isinstance(guard, m.GuardLogic):
            parts = tuple(
                self._guard(g, _join(where, "guards", i)) for i, g in enumerate(guard.guards)
            )
            return GuardAll(parts) if guard.type == "and" else GuardAny(parts)
        if isinstance(guard, m.GuardNot):
            return GuardNot(self._guard(guard.guard, _join(where, "guard")))
        assert isinstance(guard, m.GuardRef)
        named = self.spec.guards[guard.type]
        return GuardPredicate(compile_expr(named.expr), guard.params, f"'{guard.type}' at {where}")

    def _action(self, action: Any, where: str, params: Mapping[str, Any] | None = None) -> Action:
        bound = dict(params or {})
        if isinstance(action, m.NamedActionRef):
            definition = self.spec.actions[action.type]
            return self._action(definition, f"{where} (action '{action.type}')", action.params)
        if isinstance(action, m.AssignAction):
            pairs: tuple[tuple[tuple[str, ...], Value], ...]
            if action.path is not None:
                pairs = ((tuple(action.path.split(".")), compile_value(action.value)),)
            else:
                assert action.assignments is not None
                pairs = tuple(
                    (tuple(path.split(".")), compile_value(value))
                    for path, value in action.assignments.items()
                )
            return Assign(pairs, bound, where)
        if isinstance(action, m.RaiseAction):
            return RaiseAction(action.event.type, compile_value(action.event.payload), bound, where)
        if isinstance(action, m.CancelTaskAction):
            key = action.idempotency_key
            return CancelTaskAction(
                compile_value(key) if key is not None else None, action.name, bound, where
            )
        assert isinstance(action, m.CreateTaskAction)
        task = action.task
        backoff = None
        if task.retry is not None and task.retry.backoff is not None:
            backoff = {
                "type": task.retry.backoff.type,
                "delay": parse_delay_ms(task.retry.backoff.delay),
            }
        return CreateTaskAction(
            task_type=task.type,
            name=task.name,
            input=compile_value(task.input),
            run_at=compile_value(task.run_at) if task.run_at is not None else None,
            delay=compile_value(task.delay) if task.delay is not None else None,
            idempotency_key=(
                compile_value(task.idempotency_key) if task.idempotency_key is not None else None
            ),
            completion_event=task.completion_event,
            failure_event=task.failure_event,
            max_attempts=task.retry.max_attempts if task.retry is not None else None,
            backoff=backoff,
            timeout_ms=parse_delay_ms(task.timeout) if task.timeout is not None else None,
            policy=task.policy,
            params=bound,
            where=where,
            limits=_task_limits(task.limits),
        )


def _task_limits(limits: m.TaskLimitsSpec | None) -> TaskLimits | None:
    """Compiles ``task.limits``; its key's CEL was checked by validation (it sees ``input``)."""
    if limits is None:
        return None
    key = compile_expr(limits.key, with_input=True) if limits.key is not None else None
    return TaskLimits(limits.concurrency, limits.per_second, key)


def _domain(t: Transition) -> Node | None:
    """XState's ``getTransitionDomain`` (no history states in v1, so it is static)."""
    if not t.targets:
        return None
    source = t.source
    if not t.reenter and all(x is source or x.is_descendant_of(source) for x in t.targets):
        return source
    head, *rest = [*t.targets, source]
    ancestor = head.parent
    while ancestor is not None:
        if all(x.is_descendant_of(ancestor) for x in rest):
            return ancestor
        ancestor = ancestor.parent
    if t.reenter:
        return None
    root = source
    while root.parent is not None:
        root = root.parent
    return root


def compile_machine(spec: m.WorkflowSpec) -> tuple[Node, list[Node]]:
    """Builds the node tree of a validated spec; returns the root and all nodes in order."""
    compiler = _Compiler(spec)
    root = compiler.build_tree()
    compiler.fill(root, spec, "")
    for node in compiler.all_nodes:
        for group in (*node.transitions.values(), node.always):
            for t in group:
                t.domain = _domain(t)
    return root, compiler.all_nodes
