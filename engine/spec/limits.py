"""Limits on the size of a spec, checked at deploy before anything else is done with it.

One tenant's definition must not be able to hold a shard: a spec with 20,000 parallel
regions, or CEL expressions of megabytes, makes every step of every instance of it
expensive. So a spec has documented bounds (``docs/spec.md``, "Limits"), defaults
from the settings (``STATEFLEET_SPEC_MAX_*``), and per-tenant overrides set through
the admin API. Each violation is reported with the JSON path of the offending part
(the first state, transition or expression beyond the limit), as a
:class:`~statefleet.engine.spec.errors.SpecError` like any other validation problem.

The check is a single walk over the raw JSON, linear in its size, and runs before
``validate_spec``: a spec far beyond the limits is refused without compiling its CEL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import fields, replace
from typing import Any, Final

import orjson

from statefleet.engine.record import record
from statefleet.engine.spec.errors import SpecError
from statefleet.engine.spec.validate import format_path

__all__ = ["DEFAULT_SPEC_LIMITS", "LIMIT_NAMES", "SpecLimits", "check_limits"]

Loc = tuple[str | int, ...]
_TRANSITION_KEYS: Final = ("on", "always", "after", "onDone")


@record
class SpecLimits:
    """Bounds on one spec; every field is a positive integer."""

    #: State nodes in the whole spec (the root not counted).
    max_states: int = 5_000
    #: Regions (children) of one parallel state.
    max_regions: int = 1_000
    #: Nesting depth: a state directly under the root is at depth 1.
    max_depth: int = 16
    #: Transitions in the whole spec (``on``, ``always``, ``after``, ``onDone`` entries).
    max_transitions: int = 10_000
    #: Characters of one CEL expression (a guard's ``expr``, a ``$expr`` value, a limit key).
    max_expression_length: int = 2_000
    #: Bytes of the spec as compact JSON.
    max_spec_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        for name in LIMIT_NAMES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"spec limit {name} must be a positive integer, got {value!r}")

    def as_json(self) -> dict[str, int]:
        """The limits with their wire names (``maxStates``...)."""
        return {_camel(name): getattr(self, name) for name in LIMIT_NAMES}

    def with_overrides(self, overrides: Mapping[str, Any]) -> SpecLimits:
        """These limits with some replaced, given by wire name (``{"maxStates": 100}``).

        Raises:
            ValueError: an unknown name or a value that is not a positive integer.
        """
        by_wire = {_camel(name): name for name in LIMIT_NAMES}
        unknown = sorted(set(overrides) - set(by_wire))
        if unknown:
            raise ValueError(f"unknown spec limit(s): {', '.join(unknown)}")
        return replace(self, **{by_wire[key]: value for key, value in overrides.items()})


LIMIT_NAMES: Final = tuple(f.name for f in fields(SpecLimits))
DEFAULT_SPEC_LIMITS: Final = SpecLimits()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _json_size(raw: Any) -> int:
    try:
        return len(orjson.dumps(raw))
    except TypeError:
        # orjson refuses integers beyond 64 bits; the standard library measures them.
        return len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())


def check_limits(raw: Any, limits: SpecLimits = DEFAULT_SPEC_LIMITS) -> list[SpecError]:
    """The limits ``raw`` breaks: at most one error per limit, each naming an offender.

    States, regions, depth and transitions name the first offender in document
    order; an expression over the limit is named wherever the walk meets it first.
    """
    size = _json_size(raw)
    if size > limits.max_spec_bytes:
        return [
            SpecError(
                "",
                f"the spec is {size} bytes of JSON; the limit is {limits.max_spec_bytes} "
                "(maxSpecBytes)",
            )
        ]
    if not isinstance(raw, dict):
        return []
    return _Walk(limits).run(raw)


class _Walk:
    def __init__(self, limits: SpecLimits) -> None:
        self.limits = limits
        self.found: dict[str, SpecError] = {}
        self.states = 0
        self.transitions = 0

    def report(self, limit: str, loc: Loc, message: str) -> None:
        if limit not in self.found:
            self.found[limit] = SpecError(format_path(loc), f"{message} ({limit})")

    def run(self, root: dict[str, Any]) -> list[SpecError]:
        limits = self.limits
        # Pre-order, document order, without recursion (nesting is what is being checked).
        stack: list[tuple[dict[str, Any], Loc, int]] = [(root, (), 0)]
        while stack:
            node, loc, depth = stack.pop()
            if depth > 0:
                self.states += 1
                if self.states == limits.max_states + 1:
                    self.report(
                        "maxStates", loc, f"more than {limits.max_states} states in the spec"
                    )
            if depth > limits.max_depth:
                self.report(
                    "maxDepth",
                    loc,
                    f"a state nested {depth} deep; the limit is {limits.max_depth}",
                )
                continue
            self.count_transitions(node, loc)
            children = node.get("states")
            if not isinstance(children, dict):
                continue
            if node.get("type") == "parallel" and len(children) > limits.max_regions:
                self.report(
                    "maxRegions",
                    loc,
                    f"a parallel state with {len(children)} regions; the limit is "
                    f"{limits.max_regions}",
                )
            for key in reversed(list(children)):
                child = children[key]
                if isinstance(child, dict):
                    stack.append((child, (*loc, "states", key), depth + 1))
        for value, loc in _expressions(root):
            if len(value) > limits.max_expression_length:
                self.report(
                    "maxExpressionLength",
                    loc,
                    f"a CEL expression of {len(value)} characters; the limit is "
                    f"{limits.max_expression_length}",
                )
                break
        return sorted(self.found.values(), key=lambda e: e.path)

    def count_transitions(self, node: dict[str, Any], loc: Loc) -> None:
        for key in _TRANSITION_KEYS:
            group = node.get(key)
            if group is None:
                continue
            if key in ("on", "after") and isinstance(group, dict):
                for event, items in group.items():
                    self.add_transitions(items, (*loc, key, event))
            else:
                self.add_transitions(group, (*loc, key))

    def add_transitions(self, items: Any, loc: Loc) -> None:
        listed = items if isinstance(items, list) else [items]
        for index, _ in enumerate(listed):
            self.transitions += 1
            if self.transitions == self.limits.max_transitions + 1:
                where = (*loc, index) if isinstance(items, list) else loc
                self.report(
                    "maxTransitions",
                    where,
                    f"more than {self.limits.max_transitions} transitions in the spec",
                )


def _expressions(root: dict[str, Any]) -> Iterator[tuple[str, Loc]]:
    """Every CEL source in the spec with its location, in no particular order.

    CEL lives in single-key ``{"$expr": ...}`` values, in the ``expr`` of a guard
    (under ``guard``/``cond``/``guards``), in the root's named ``guards``
    written as plain strings, and in a ``createTask``'s ``task.limits.key``.
    The root ``context`` is data and is not walked.
    """
    named = root.get("guards")
    if isinstance(named, dict):
        for name, guard in named.items():
            if isinstance(guard, str):
                yield guard, ("guards", name)
    stack: list[tuple[Any, Loc, bool]] = [
        (value, (key,), key in ("guards", "guard", "cond"))
        for key, value in root.items()
        if key != "context"
    ]
    while stack:
        item, loc, in_guard = stack.pop()
        if isinstance(item, dict):
            if len(item) == 1 and isinstance(item.get("$expr"), str):
                yield item["$expr"], (*loc, "$expr")
                continue
            if in_guard and isinstance(item.get("expr"), str):
                yield item["expr"], (*loc, "expr")
            if item.get("type") == "createTask":
                task = item.get("task")
                limits = task.get("limits") if isinstance(task, dict) else None
                if isinstance(limits, dict) and isinstance(limits.get("key"), str):
                    yield limits["key"], (*loc, "task", "limits", "key")
            for key, value in item.items():
                stack.append((value, (*loc, key), in_guard or key in ("guard", "cond", "guards")))
        elif isinstance(item, list):
            stack.extend((value, (*loc, index), in_guard) for index, value in enumerate(item))
