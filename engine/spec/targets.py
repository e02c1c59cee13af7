"""Transition targets resolved to state paths, exactly as XState v5 resolves them.

The validator and the interpreter's compiler share one :class:`StateIndex`, built
once per spec, so a target that validates is the target that runs. The rules
mirror XState v5 (``stateUtils.ts``: ``resolveTarget``, ``getStateNodeByPath``,
``getStateNode``; ``StateMachine.getStateNodeById``; ``utils.ts``:
``toStatePath``), quirks included: ``#id.child`` looks up only the first
segment as an id; an empty segment (``"a."``) stops the walk; a backslash
escapes the next character (``#my\\.id``).

A state path is the tuple of state keys from the root; ``()`` is the root.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from statefleet.engine.record import record
from statefleet.engine.spec.models import StateNodeSpec, WorkflowSpec

__all__ = ["StateIndex", "StatePath", "resolve_target", "to_state_path"]

StatePath = tuple[str, ...]
_Entry = tuple[StatePath, str | None, tuple[str, ...]]

STATE_DELIMITER: Final = "."
STATE_IDENTIFIER: Final = "#"
DEFAULT_MACHINE_ID: Final = "(machine)"


def to_state_path(text: str) -> list[str]:
    """Splits a dotted target on ``.``; a backslash makes the next character literal."""
    result: list[str] = []
    segment: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            segment.append(next(chars, ""))
        elif char == STATE_DELIMITER:
            result.append("".join(segment))
            segment = []
        else:
            segment.append(char)
    result.append("".join(segment))
    return result


@record
class StateIndex:
    """Every state of one spec, addressable by path and by id.

    Attributes:
        machine_id: the root's id; default ids are ``machine_id`` plus the path.
        children: each state's child keys in document order (``()`` for none).
        by_id: every id (custom and default) to its path; when two nodes share
            an id the later one in document order wins, as in XState's idMap.
        ids: each path's state id (its custom ``id``, else its default id), the
            id that timer and done event types are built from.
    """

    machine_id: str
    children: Mapping[StatePath, tuple[str, ...]]
    by_id: Mapping[str, StatePath]
    ids: Mapping[StatePath, str]

    @classmethod
    def build(cls, spec: WorkflowSpec) -> StateIndex:
        """Indexes a validated spec."""

        def walk(path: StatePath, node: StateNodeSpec) -> Iterator[_Entry]:
            states = node.states or {}
            yield path, node.id or None, tuple(states)
            for key, child in states.items():
                yield from walk((*path, key), child)

        return cls._from_entries(spec.id, walk((), spec))

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StateIndex:
        """Indexes raw spec JSON, tolerating malformed parts.

        Used by the validator before (or without) a model: a child that is not
        an object is indexed as a leaf and a non-string ``id`` is ignored, so one
        structural error does not turn into many target errors.
        """

        def walk(path: StatePath, node: Any) -> Iterator[_Entry]:
            if not isinstance(node, dict):
                yield path, None, ()
                return
            raw_states = node.get("states")
            states: dict[str, Any] = raw_states if isinstance(raw_states, dict) else {}
            custom = node.get("id")
            yield path, custom if isinstance(custom, str) and custom else None, tuple(states)
            for key, child in states.items():
                yield from walk((*path, key), child)

        machine_id = raw.get("id")
        if not isinstance(machine_id, str) or not machine_id:
            machine_id = DEFAULT_MACHINE_ID
        return cls._from_entries(machine_id, walk((), raw))

    @classmethod
    def _from_entries(cls, machine_id: str, entries: Iterator[_Entry]) -> StateIndex:
        children: dict[StatePath, tuple[str, ...]] = {}
        by_id: dict[str, StatePath] = {}
        ids: dict[StatePath, str] = {}
        for path, custom_id, keys in entries:
            if path:
                state_id = custom_id or STATE_DELIMITER.join((machine_id, *path))
            else:
                state_id = machine_id
            children[path] = keys
            ids[path] = state_id
            by_id[state_id] = path
        return cls(machine_id, children, by_id, ids)

    def default_id(self, path: StatePath) -> str:
        """The id XState gives ``path`` when it has no custom ``id``."""
        return STATE_DELIMITER.join((self.machine_id, *path)) if path else self.machine_id

    def resolve(self, source: StatePath, target: str) -> StatePath:
        """The path that ``target`` names when written on the state at ``source``.

        ``#id`` / ``#id.child`` go through the id map; ``.child`` is relative to
        ``source``; anything else is relative to ``source``'s parent (so the
        root accepts only ``.child`` and ``#id`` targets).

        Raises:
            ValueError: the target names a missing id or child, or is a
                sibling target written on the root; the message says which.
        """
        if source not in self.children:
            raise ValueError(f"unknown source state {list(source)!r}")
        if not target:
            raise ValueError("an empty target names no state; omit `target` instead")
        try:
            if target.startswith(STATE_IDENTIFIER):
                return self._by_state_id(target)
            if target.startswith(STATE_DELIMITER):
                if not source:
                    return self._by_path((), target[1:])
                return self._by_path(source[:-1], source[-1] + target)
            if not source:
                raise ValueError(
                    "a sibling target is not valid from the root node, which has no "
                    f"siblings; did you mean '.{target}'?"
                )
            return self._by_path(source[:-1], target)
        except ValueError as exc:
            raise ValueError(f"target '{target}' does not resolve: {exc}") from None

    def _by_state_id(self, text: str) -> StatePath:
        # StateMachine.getStateNodeById: only the first segment is an id.
        first, *rest = to_state_path(text)
        state_id = first[len(STATE_IDENTIFIER) :] if first.startswith(STATE_IDENTIFIER) else first
        path = self.by_id.get(state_id)
        if path is None:
            hint = ""
            whole = text[len(STATE_IDENTIFIER) :]
            if whole in self.by_id:
                escaped = whole.replace(STATE_DELIMITER, "\\" + STATE_DELIMITER)
                hint = f"; '#{whole}' is read as id '{state_id}' plus children, write '#{escaped}'"
            raise ValueError(f"no state has the id '{state_id}'{hint}")
        return self._walk(path, rest)

    def _by_path(self, start: StatePath, text: str) -> StatePath:
        # getStateNodeByPath: a string that is a state id is tried as one first.
        if text.startswith(STATE_IDENTIFIER):
            try:
                return self._by_state_id(text)
            except ValueError:
                pass
        return self._walk(start, to_state_path(text))

    def _walk(self, path: StatePath, keys: list[str]) -> StatePath:
        for key in keys:
            if not key:
                break
            if key.startswith(STATE_IDENTIFIER):
                path = self._by_state_id(key)
                continue
            child = (*path, key)
            if child not in self.children:  # a dict lookup: keeps wide states linear
                children = self.children[path]
                if not children:
                    raise ValueError(
                        f"state '{self.ids[path]}' has no child states (looking for '{key}')"
                    )
                raise ValueError(
                    f"state '{self.ids[path]}' has no child '{key}'; "
                    f"its children are: {name_list(children)}"
                )
            path = child
        return path


def name_list(names: Iterable[str], limit: int = 20) -> str:
    """Names for an error message, comma-separated, the tail elided past ``limit``."""
    listed = list(names)
    if len(listed) <= limit:
        return ", ".join(listed)
    return f"{', '.join(listed[:limit])} and {len(listed) - limit} more"


def resolve_target(
    spec: StateIndex | WorkflowSpec, source_path: StatePath, target: str
) -> StatePath:
    """Resolves one target; see :meth:`StateIndex.resolve`.

    Passing a :class:`WorkflowSpec` builds an index per call: fine for one-off
    lookups, but a compiler resolving every transition should build the
    :class:`StateIndex` once.

    Raises:
        ValueError: the target does not name a state of the spec.
    """
    index = spec if isinstance(spec, StateIndex) else StateIndex.build(spec)
    return index.resolve(source_path, target)
