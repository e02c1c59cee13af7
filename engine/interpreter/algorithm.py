"""XState v5's step algorithm (SCXML-derived), over compiled nodes.

Names follow XState's ``stateUtils.ts`` and the SCXML spec so the two can be
read side by side: ``select_transitions``, ``remove_conflicting_transitions``,
``compute_exit_set``, ``compute_entry_set``, ``microstep``, ``macrostep``.

One deliberate normalisation: the active configuration is always taken in
document order. XState keeps it in insertion order in memory, which can list
parallel regions out of document order after some transitions, but restores
document order whenever a persisted snapshot is loaded. Our instances are
restored from a checkpoint before every step, so document order is the
behaviour users see from both engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from statefleet.engine.interpreter.actions import Action, StepState
from statefleet.engine.interpreter.nodes import Node, Transition, done_event_type
from statefleet.engine.interpreter.values import EvaluationError

__all__ = [
    "MAX_MICROSTEPS",
    "Configuration",
    "config_from_value",
    "macrostep",
    "value_of",
]

#: Microsteps one event may cause before it is declared an eventless/raise loop.
MAX_MICROSTEPS = 1000

Configuration = set[Node]


# -- configuration <-> state value ------------------------------------------------


def config_from_value(root: Node, value: Any) -> Configuration:
    """The active nodes named by a state value (XState's ``getStateNodes`` + ancestors).

    Raises:
        EvaluationError: the value names a state the machine does not have
            (a snapshot from another definition version, or a corrupted one).
    """
    config: Configuration = {root}
    _collect(root, value, config)
    return config


def _collect(node: Node, value: Any, config: Configuration) -> None:
    if node.kind == "compound":
        if isinstance(value, str):
            child = node.by_key.get(value)
            if child is None:
                raise EvaluationError(f"state value names unknown state '{value}' in '{node.id}'")
            config.add(child)
            _enter_defaults(child, config)
            return
        if not isinstance(value, dict) or len(value) != 1:
            raise EvaluationError(f"state value for compound state '{node.id}' must name one child")
        ((key, sub),) = value.items()
        child = node.by_key.get(key)
        if child is None:
            raise EvaluationError(f"state value names unknown state '{key}' in '{node.id}'")
        config.add(child)
        _collect(child, sub, config)
    elif node.kind == "parallel":
        sub_values = value if isinstance(value, dict) else {}
        for child in node.children:
            config.add(child)
            if child.key in sub_values:
                _collect(child, sub_values[child.key], config)
            else:
                _enter_defaults(child, config)


def _enter_defaults(node: Node, config: Configuration) -> None:
    if node.kind == "compound":
        assert node.initial is not None
        config.add(node.initial)
        _enter_defaults(node.initial, config)
    elif node.kind == "parallel":
        for child in node.children:
            config.add(child)
            _enter_defaults(child, config)


def value_of(node: Node, config: Configuration) -> Any:
    """XState's ``getStateValue``: strings for atomic children, objects otherwise."""
    if node.kind == "compound":
        for child in node.children:
            if child in config:
                return child.key if child.is_atomic else {child.key: value_of(child, config)}
        return {}
    if node.kind == "parallel":
        return {child.key: value_of(child, config) for child in node.children}
    return {}


def root_value(root: Node, config: Configuration) -> Any:
    return value_of(root, config)


# -- selection --------------------------------------------------------------------


def _next(node: Node, event: Mapping[str, Any], context: Mapping[str, Any]) -> list[Transition]:
    """XState's ``StateNode.next``: the first enabled candidate of this node, if any."""
    for candidate in node.candidates(event["type"]):
        guard = candidate.guard
        if guard is None or guard.test(context, event):
            return [candidate]
    return []


def _transition_node(
    node: Node, config: Configuration, event: Mapping[str, Any], context: Mapping[str, Any]
) -> list[Transition]:
    if node.kind == "compound":
        for child in node.children:
            if child in config:
                found = _transition_node(child, config, event, context)
                return found or _next(node, event, context)
        return _next(node, event, context)
    if node.kind == "parallel":
        found = []
        for child in node.children:
            found.extend(_transition_node(child, config, event, context))
        return found or _next(node, event, context)
    return _next(node, event, context)


def select_transitions(
    root: Node, config: Configuration, event: Mapping[str, Any], context: Mapping[str, Any]
) -> list[Transition]:
    """Deepest state first, document order across regions; guards see ``context`` as is."""
    return _transition_node(root, config, event, context)


def select_eventless_transitions(
    config: Configuration, event: Mapping[str, Any], context: Mapping[str, Any]
) -> list[Transition]:
    enabled: list[Transition] = []
    for atomic in sorted((n for n in config if n.is_atomic), key=_order):
        node: Node | None = atomic
        while node is not None:
            chosen = next(
                (t for t in node.always if t.guard is None or t.guard.test(context, event)),
                None,
            )
            if chosen is not None:
                if chosen not in enabled:
                    enabled.append(chosen)
                break
            node = node.parent
    return remove_conflicting_transitions(enabled, config)


def _order(node: Node) -> int:
    return node.order


# -- exit and entry sets --------------------------------------------------------


def compute_exit_set(transitions: Iterable[Transition], config: Configuration) -> set[Node]:
    exit_set: set[Node] = set()
    for t in transitions:
        if not t.targets:
            continue
        domain = t.domain
        if domain is None:
            # A reentering transition to the root: XState's isDescendant(n, undefined)
            # holds for every node, the root included, so everything is exited.
            exit_set.update(config)
            continue
        if t.reenter and t.source is domain:
            exit_set.add(domain)
        exit_set.update(n for n in config if domain in n.ancestors)
    return exit_set


def remove_conflicting_transitions(
    transitions: list[Transition], config: Configuration
) -> list[Transition]:
    """SCXML's conflict rule as XState applies it: a descendant's transition preempts."""
    if len(transitions) < 2:
        return transitions
    filtered: list[Transition] = []
    for t1 in transitions:
        preempted = False
        to_remove: list[Transition] = []
        exit1 = compute_exit_set([t1], config)
        for t2 in filtered:
            if exit1 & compute_exit_set([t2], config):
                if t1.source.is_descendant_of(t2.source):
                    to_remove.append(t2)
                else:
                    preempted = True
                    break
        if not preempted:
            for t in to_remove:
                filtered.remove(t)
            filtered.append(t1)
    return filtered


def _add_descendants_to_enter(node: Node, to_enter: set[Node], default_entry: set[Node]) -> None:
    if node.kind == "compound":
        initial = node.initial
        assert initial is not None
        to_enter.add(initial)
        default_entry.add(initial)
        _add_descendants_to_enter(initial, to_enter, default_entry)
        _add_ancestors_to_enter(_proper_ancestors(initial, node), to_enter, default_entry, None)
    elif node.kind == "parallel":
        for child in node.children:
            if not any(s.is_descendant_of(child) for s in to_enter):
                to_enter.add(child)
                default_entry.add(child)
                _add_descendants_to_enter(child, to_enter, default_entry)


def _add_ancestors_to_enter(
    ancestors: list[Node],
    to_enter: set[Node],
    default_entry: set[Node],
    reentrancy_domain: Node | None,
) -> None:
    for ancestor in ancestors:
        if reentrancy_domain is None or ancestor.is_descendant_of(reentrancy_domain):
            to_enter.add(ancestor)
        if ancestor.kind == "parallel":
            for child in ancestor.children:
                if not any(s.is_descendant_of(child) for s in to_enter):
                    to_enter.add(child)
                    _add_descendants_to_enter(child, to_enter, default_entry)


def _proper_ancestors(node: Node, until: Node | None) -> list[Node]:
    """XState's ``getProperAncestors``: nothing at all when ``node`` is ``until``."""
    if node is until:
        return []
    out = []
    current = node.parent
    while current is not None and current is not until:
        out.append(current)
        current = current.parent
    return out


def compute_entry_set(
    transitions: Iterable[Transition], to_enter: set[Node], default_entry: set[Node]
) -> None:
    for t in transitions:
        domain = t.domain
        for target in t.targets:
            if t.source is not target or t.source is not domain or t.reenter:
                to_enter.add(target)
                default_entry.add(target)
            _add_descendants_to_enter(target, to_enter, default_entry)
        for target in t.targets:
            ancestors = _proper_ancestors(target, domain)
            if domain is not None and domain.kind == "parallel":
                ancestors.append(domain)
            reentrancy = None if (t.source.parent is None and t.reenter) else domain
            _add_ancestors_to_enter(ancestors, to_enter, default_entry, reentrancy)


# -- steps ----------------------------------------------------------------------------


def _run(actions: Iterable[Action], state: StepState, event: Mapping[str, Any]) -> None:
    for action in actions:
        action.run(state, event)


def _is_in_final_state(config: Configuration, node: Node) -> bool:
    if node.kind == "compound":
        return any(c.kind == "final" and c in config for c in node.children)
    if node.kind == "parallel":
        return all(_is_in_final_state(config, c) for c in node.children)
    return node.kind == "final"


def enter_states(
    to_enter: set[Node], config: Configuration, state: StepState, event: Mapping[str, Any]
) -> None:
    completed: set[Node] = set()
    for node in sorted(to_enter, key=_order):
        config.add(node)
        _run(node.entry, state, event)
        if node.kind != "final":
            continue
        parent = node.parent
        assert parent is not None
        marker = parent if parent.kind == "parallel" else parent.parent
        if parent.kind == "compound":
            state.queue.append({"type": done_event_type(parent.id), "payload": {}})
        while (
            marker is not None
            and marker.kind == "parallel"
            and marker not in completed
            and _is_in_final_state(config, marker)
        ):
            completed.add(marker)
            state.queue.append({"type": done_event_type(marker.id), "payload": {}})
            marker = marker.parent
        if marker is not None:
            continue
        state.status = "done"
        if node.parent is not None and node.parent.parent is None and node.output is not None:
            variables = state.variables(event, {})
            state.output = node.output.resolve(variables, f"output of '{node.id}'")
        else:
            state.output = state.context


def _exit_all_on_done(config: Configuration, state: StepState, event: Mapping[str, Any]) -> None:
    if state.status == "done":
        for node in sorted(config, key=_order, reverse=True):
            _run(node.exit, state, event)


def initial_microstep(
    initial_nodes: Iterable[Node],
    config: Configuration,
    state: StepState,
    event: Mapping[str, Any],
) -> None:
    """Enters the root and its initial descendants (root entry actions run too)."""
    enter_states(set(initial_nodes), config, state, event)
    _exit_all_on_done(config, state, event)


def microstep(
    transitions: list[Transition],
    config: Configuration,
    state: StepState,
    event: Mapping[str, Any],
) -> None:
    """Takes one set of transitions: exit set, transition actions, entry set."""
    filtered = remove_conflicting_transitions(transitions, config)
    if not filtered:
        return
    exit_set = compute_exit_set(filtered, config)
    for node in sorted(exit_set, key=_order, reverse=True):
        _run(node.exit, state, event)
        config.discard(node)
    for t in filtered:
        _run(t.actions, state, event)
    to_enter: set[Node] = set()
    compute_entry_set(filtered, to_enter, set())
    enter_states(to_enter, config, state, event)
    _exit_all_on_done(config, state, event)


def macrostep(
    root: Node,
    config: Configuration,
    state: StepState,
    event: Mapping[str, Any],
    *,
    initial: bool = False,
    has_always: bool = True,
) -> bool:
    """Processes one external event to completion; returns whether it was handled.

    Eventless transitions are checked after every microstep and before each
    raised event (XState's order), and see the event that triggered them.
    A loop of eventless transitions or raised events is cut off after
    ``MAX_MICROSTEPS`` with an error instead of hanging the worker.
    """
    handled = True
    if not initial:
        transitions = select_transitions(root, config, event, state.context)
        handled = bool(transitions)
        microstep(transitions, config, state, event)
    next_event = event
    select_eventless = True
    steps = 0
    while state.status == "active":
        enabled = (
            select_eventless_transitions(config, next_event, state.context)
            if select_eventless and has_always
            else []
        )
        from_eventless = bool(enabled)
        if not enabled:
            if not state.queue:
                break
            next_event = state.queue.popleft()
            enabled = select_transitions(root, config, next_event, state.context)
        steps += 1
        if steps > MAX_MICROSTEPS:
            where = ", ".join(sorted({t.source.id for t in enabled})) or "?"
            raise EvaluationError(
                f"more than {MAX_MICROSTEPS} microsteps for one event: eventless transitions "
                f"or raised events loop (last from state {where})"
            )
        if from_eventless:
            config_before = frozenset(config)
            context_before = state.context
            microstep(enabled, config, state, next_event)
            # XState stops re-selecting eventless transitions when one changed nothing
            # (same configuration, same context); raised events are still processed.
            select_eventless = (
                state.context is not context_before
                or state.status != "active"
                or config != config_before
            )
        else:
            microstep(enabled, config, state, next_event)
            select_eventless = True
    return handled
