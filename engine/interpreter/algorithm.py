"""XState v5's step algorithm (SCXML-derived), over compiled nodes.

Names follow XState's ``stateUtils.ts`` and the SCXML spec so the two can be
read side by side: ``select_transitions``, ``remove_conflicting_transitions``,
``compute_exit_set``, ``compute_entry_set``, ``microstep``, ``macrostep``.

The order of the active configuration (precise point 13). XState keeps its
active nodes in a list: a microstep removes the states it exits and appends the
states it enters (in document order), unless the resulting set is the one it
started from, in which case the old order is kept. Within one macrostep that
order decides which region's eventless transitions are selected first (atomic
states in configuration order). Raised events still meet a parallel state's
regions in document order: XState takes them in the order the regions became
active, and regions are only ever exited and entered all together (a
transition that exits one region has the parallel state or an ancestor as its
domain), in document order, so that order never changes. A snapshot
restored from a checkpoint starts from the order XState's ``resolveState``
gives, which is document order except that atomic regions of a parallel state
come right after that state, before the states inside its other regions.
:class:`Configuration` keeps that order; the runtime restores every step from a
checkpoint, so the order never outlives one macrostep.

Cost: every part of one microstep is linear in the states and transitions it
touches (exit sets are walked from each domain through the active children,
conflicts are found through the states each kept transition exits, the entry
set knows which states already have a descendant to enter), so one event to
N parallel regions costs O(N), not the O(N^2) of the textbook algorithm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from statefleet.engine.interpreter.actions import Action, StepState
from statefleet.engine.interpreter.budget import NO_CLOCK
from statefleet.engine.interpreter.nodes import Node, Transition, done_event_type
from statefleet.engine.interpreter.values import EvaluationError

__all__ = [
    "Configuration",
    "config_from_value",
    "macrostep",
    "value_of",
]


#: The active state nodes, in XState's order (see the module docstring): a ``dict``
#: used as an ordered set (values are ``None``). ``config[node] = None`` adds a node at
#: the end unless it is there already, where it stays; ``config.pop(node, None)``
#: removes it; a node removed and added again goes to the end, as in a JavaScript
#: ``Set``. A plain dict, so membership and iteration, the hot paths, run at C speed.
Configuration = dict[Node, None]


# -- configuration <-> state value ------------------------------------------------


def config_from_value(root: Node, value: Any) -> Configuration:
    """The active nodes named by a state value, in the order XState restores them.

    XState's ``getStateNodes`` lists a parallel state's regions right after it
    and only then the states inside each region; regions are taken in document
    order whatever the key order of ``value`` (a checkpoint read back from JSONB
    may have its keys reordered).

    Raises:
        EvaluationError: the value names a state the machine does not have
            (a snapshot from another definition version, or a corrupted one).
    """
    config: Configuration = {root: None}
    _collect(root, value, config)
    return config


def _collect(node: Node, value: Any, config: Configuration) -> None:
    if node.kind == "compound":
        if isinstance(value, str):
            child = node.by_key.get(value)
            if child is None:
                raise EvaluationError(f"state value names unknown state '{value}' in '{node.id}'")
            config[child] = None
            _enter_defaults(child, config)
            return
        if not isinstance(value, dict) or len(value) != 1:
            raise EvaluationError(f"state value for compound state '{node.id}' must name one child")
        ((key, sub),) = value.items()
        child = node.by_key.get(key)
        if child is None:
            raise EvaluationError(f"state value names unknown state '{key}' in '{node.id}'")
        config[child] = None
        _collect(child, sub, config)
    elif node.kind == "parallel":
        sub_values = value if isinstance(value, dict) else {}
        present = [child for child in node.children if child.key in sub_values]
        for child in present:
            config[child] = None
        for child in present:
            _collect(child, sub_values[child.key], config)
        for child in node.children:
            if child.key not in sub_values:
                config[child] = None
                _enter_defaults(child, config)


def _enter_defaults(node: Node, config: Configuration) -> None:
    if node.kind == "compound":
        assert node.initial is not None
        config[node.initial] = None
        _enter_defaults(node.initial, config)
    elif node.kind == "parallel":
        for child in node.children:
            config[child] = None
            _enter_defaults(child, config)


def value_of(node: Node, config: Configuration) -> Any:
    """XState's ``getStateValue``: strings for atomic children, objects otherwise.

    Keys are in document order (the order users and checkpoints see).
    """
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


def _next(node: Node, event: Mapping[str, Any], state: StepState) -> list[Transition]:
    """XState's ``StateNode.next``: the first enabled candidate of this node, if any."""
    for candidate in node.candidates(event["type"]):
        guard = candidate.guard
        if guard is None:
            return [candidate]
        meter = state.meter
        meter.units += 1
        if meter.units >= meter.next_check:
            meter.check_time()
        if guard.test(state.context, event):
            return [candidate]
    return []


def _transition_node(
    node: Node, config: Configuration, event: Mapping[str, Any], state: StepState
) -> list[Transition]:
    if node.kind == "compound":
        for child in node.children:
            if child in config:
                found = _transition_node(child, config, event, state)
                return found or _next(node, event, state)
        return _next(node, event, state)
    if node.kind == "parallel":
        found = []
        for child in node.children:
            found.extend(_transition_node(child, config, event, state))
        return found or _next(node, event, state)
    return _next(node, event, state)


def select_transitions(
    root: Node, config: Configuration, event: Mapping[str, Any], state: StepState
) -> list[Transition]:
    """Deepest state first, document order across regions; guards see the context as is."""
    return _transition_node(root, config, event, state)


def select_eventless_transitions(
    config: Configuration, event: Mapping[str, Any], state: StepState
) -> list[Transition]:
    """Atomic states in configuration order, each with its nearest enabled ``always``."""
    enabled: dict[Transition, None] = {}
    meter = state.meter
    for atomic in [n for n in config if n.is_atomic]:
        node: Node | None = atomic
        while node is not None:
            chosen = None
            for t in node.always:
                if t.guard is None:
                    chosen = t
                    break
                meter.units += 1
                if meter.units >= meter.next_check:
                    meter.check_time()
                if t.guard.test(state.context, event):
                    chosen = t
                    break
            if chosen is not None:
                enabled[chosen] = None
                break
            node = node.parent
    return remove_conflicting_transitions(list(enabled), config)


def _order(node: Node) -> int:
    return node.order


# -- exit and entry sets --------------------------------------------------------


def _exit_set_of(t: Transition, config: Configuration) -> list[Node]:
    """XState's ``computeExitSet`` for one transition, walked from its domain.

    The active descendants of the domain are found through active children
    only, so the cost is the size of the answer (plus the siblings of active
    compound children), not the size of the configuration.
    """
    if not t.targets:
        return []
    domain = t.domain
    if domain is None:
        # A reentering transition to the root: XState's isDescendant(n, undefined)
        # holds for every node, the root included, so everything is exited.
        return list(config)
    out = [domain] if t.reenter and t.source is domain else []
    stack = [domain]
    while stack:
        node = stack.pop()
        for child in node.children:
            if child in config:
                out.append(child)
                stack.append(child)
    return out


def compute_exit_set(transitions: Iterable[Transition], config: Configuration) -> set[Node]:
    exit_set: set[Node] = set()
    for t in transitions:
        exit_set.update(_exit_set_of(t, config))
    return exit_set


def remove_conflicting_transitions(
    transitions: list[Transition], config: Configuration
) -> list[Transition]:
    """SCXML's conflict rule as XState applies it: a descendant's transition preempts.

    XState compares every pair of exit sets. The kept transitions' exit sets
    are pairwise disjoint (a conflict removes one side), so each exited state
    has at most one owner among them: looking up the owners of a new
    transition's exit set finds exactly the kept transitions it conflicts with.
    """
    if len(transitions) < 2:
        return transitions
    kept: dict[Transition, list[Node]] = {}
    owner: dict[Node, Transition] = {}
    for t1 in transitions:
        exit1 = _exit_set_of(t1, config)
        rivals = dict.fromkeys(owner[n] for n in exit1 if n in owner)
        if any(not t1.source.is_descendant_of(t2.source) for t2 in rivals):
            continue  # preempted by a transition kept earlier
        for t2 in rivals:
            for node in kept.pop(t2):
                del owner[node]
        kept[t1] = exit1
        for node in exit1:
            owner[node] = t1
    return list(kept)


class _EntrySet:
    """States to enter, and every proper ancestor of them (for O(1) descent tests)."""

    __slots__ = ("covered", "nodes")

    def __init__(self) -> None:
        self.nodes: set[Node] = set()
        self.covered: set[Node] = set()

    def add(self, node: Node) -> None:
        if node in self.nodes:
            return
        self.nodes.add(node)
        parent = node.parent
        while parent is not None and parent not in self.covered:
            self.covered.add(parent)
            parent = parent.parent

    def has_descendant_of(self, node: Node) -> bool:
        """XState's ``[...statesToEnter].some(s => isDescendant(s, node))``."""
        return node in self.covered


def _add_descendants_to_enter(node: Node, to_enter: _EntrySet) -> None:
    if node.kind == "compound":
        initial = node.initial
        assert initial is not None
        to_enter.add(initial)
        _add_descendants_to_enter(initial, to_enter)
        _add_ancestors_to_enter(_proper_ancestors(initial, node), to_enter, None)
    elif node.kind == "parallel":
        for child in node.children:
            if not to_enter.has_descendant_of(child):
                to_enter.add(child)
                _add_descendants_to_enter(child, to_enter)


def _add_ancestors_to_enter(
    ancestors: list[Node], to_enter: _EntrySet, reentrancy_domain: Node | None
) -> None:
    for ancestor in ancestors:
        if reentrancy_domain is None or ancestor.is_descendant_of(reentrancy_domain):
            to_enter.add(ancestor)
        if ancestor.kind == "parallel":
            for child in ancestor.children:
                if not to_enter.has_descendant_of(child):
                    to_enter.add(child)
                    _add_descendants_to_enter(child, to_enter)


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


def compute_entry_set(transitions: Iterable[Transition], to_enter: _EntrySet) -> None:
    for t in transitions:
        domain = t.domain
        for target in t.targets:
            if t.source is not target or t.source is not domain or t.reenter:
                to_enter.add(target)
            _add_descendants_to_enter(target, to_enter)
        for target in t.targets:
            ancestors = _proper_ancestors(target, domain)
            if domain is not None and domain.kind == "parallel":
                ancestors.append(domain)
            reentrancy = None if (t.source.parent is None and t.reenter) else domain
            _add_ancestors_to_enter(ancestors, to_enter, reentrancy)


# -- steps ----------------------------------------------------------------------------


def _run(actions: tuple[Action, ...], state: StepState, event: Mapping[str, Any]) -> None:
    meter = state.meter
    meter.units += 1 + len(actions)
    if meter.units >= meter.next_check:
        meter.check_time()
    for action in actions:
        action.run(state, event)


def _is_in_final_state(config: Configuration, node: Node) -> bool:
    if node.kind == "compound":
        return any(c.kind == "final" and c in config for c in node.children)
    if node.kind == "parallel":
        return all(_is_in_final_state(config, c) for c in node.children)
    return node.kind == "final"


class _FinalRegions:
    """XState's ``isInFinalState`` for parallel states while states are being entered.

    Entering only adds states, so a region found final stays final until the
    entry loop ends: each parallel state remembers how many of its regions
    (in document order) are known to be final, and the next check resumes
    there. N regions reaching their final states in one step cost O(N), not
    O(N^2).
    """

    __slots__ = ("config", "known")

    def __init__(self, config: Configuration) -> None:
        self.config = config
        self.known: dict[Node, int] = {}

    def done(self, node: Node) -> bool:
        children = node.children
        index = self.known.get(node, 0)
        while index < len(children) and _is_in_final_state(self.config, children[index]):
            index += 1
        self.known[node] = index
        return index == len(children)


def enter_states(
    to_enter: Iterable[Node], config: Configuration, state: StepState, event: Mapping[str, Any]
) -> None:
    completed: set[Node] = set()
    finals: _FinalRegions | None = None  # made when a final state is entered
    for node in sorted(to_enter, key=_order):
        config[node] = None
        _run(node.entry, state, event)
        if node.kind != "final":
            continue
        parent = node.parent
        assert parent is not None
        marker = parent if parent.kind == "parallel" else parent.parent
        if parent.kind == "compound":
            state.queue.append({"type": done_event_type(parent.id), "payload": {}})
        if finals is None:
            finals = _FinalRegions(config)
        while (
            marker is not None
            and marker.kind == "parallel"
            and marker not in completed
            and finals.done(marker)
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
    enter_states(initial_nodes, config, state, event)
    _exit_all_on_done(config, state, event)


def microstep(
    transitions: list[Transition],
    config: Configuration,
    state: StepState,
    event: Mapping[str, Any],
) -> None:
    """Takes one set of transitions: exit set, transition actions, entry set.

    Exited states leave the configuration and entered ones join its end; when
    the microstep ends on the set of states it started from, the order it
    started from is kept (XState keeps its old node list then).
    """
    filtered = remove_conflicting_transitions(transitions, config)
    if not filtered:
        return
    exit_set = compute_exit_set(filtered, config)
    saved = dict(config) if exit_set else None
    for node in sorted(exit_set, key=_order, reverse=True):
        _run(node.exit, state, event)
        config.pop(node, None)
    for t in filtered:
        _run(t.actions, state, event)
    to_enter = _EntrySet()
    compute_entry_set(filtered, to_enter)
    enter_states(to_enter.nodes, config, state, event)
    if saved is not None and config.keys() == saved.keys():
        config.clear()  # the same set: the order it started from is kept
        config.update(saved)
    _exit_all_on_done(config, state, event)


def _sources(transitions: list[Transition]) -> str:
    return ", ".join(sorted({t.source.id for t in transitions})) or "?"


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
    A loop of eventless transitions or raised events is cut off by the step's
    budget (``state.meter``: microsteps, and time when the caller gave a
    clock) with an error instead of hanging the worker.
    """
    handled = True
    if not initial:
        transitions = select_transitions(root, config, event, state)
        handled = bool(transitions)
        microstep(transitions, config, state, event)
    next_event = event
    select_eventless = True
    enabled: list[Transition] = []
    meter = state.meter
    while state.status == "active":
        # Counted at the top of every pass, the last one included, as XState counts
        # against its ``maxIterations``.
        meter.microsteps += 1
        if meter.microsteps > meter.max_microsteps:
            raise meter.too_many_microsteps(_sources(enabled))
        if meter.next_check != NO_CLOCK:
            meter.check_time()
        enabled = (
            select_eventless_transitions(config, next_event, state)
            if select_eventless and has_always
            else []
        )
        from_eventless = bool(enabled)
        if not enabled:
            if not state.queue:
                break
            next_event = state.queue.popleft()
            enabled = select_transitions(root, config, next_event, state)
        if from_eventless:
            nodes_before = set(config)
            context_before = state.context
            microstep(enabled, config, state, next_event)
            # XState stops re-selecting eventless transitions when one changed nothing
            # (same configuration, same context); raised events are still processed.
            select_eventless = (
                state.context is not context_before
                or state.status != "active"
                or config.keys() != nodes_before
            )
        else:
            microstep(enabled, config, state, next_event)
            select_eventless = True
    return handled
