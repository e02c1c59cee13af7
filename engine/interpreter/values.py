"""Values: JSON literals with ``{"$expr": CEL}`` holes, compiled once per spec.

A value is compiled into a small tree so that resolving it at run time walks
only the parts that hold expressions; a value without any expression resolves
to a fresh copy of its literal (the literal itself is shared by every instance
of the machine and must never be handed out for mutation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statefleet.engine.cel import CelEvaluationError, Expression, compile_expr

__all__ = [
    "EvaluationError",
    "Value",
    "compile_value",
    "copy_json",
    "set_path",
]


class EvaluationError(Exception):
    """A spec expression failed at run time; the step is rejected as a whole."""


def copy_json(value: Any) -> Any:
    """Copies JSON containers; cheaper than ``copy.deepcopy`` for plain data."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


class Value:
    """A compiled value; ``resolve`` evaluates its expressions over the variables."""

    __slots__ = ("_expr", "_items", "_keys", "_kind", "_literal")

    def __init__(
        self,
        kind: str,
        literal: Any = None,
        expr: Expression | None = None,
        keys: tuple[str, ...] = (),
        items: tuple[Value, ...] = (),
    ) -> None:
        self._kind = kind
        self._literal = literal
        self._expr = expr
        self._keys = keys
        self._items = items

    @property
    def is_literal(self) -> bool:
        return self._kind == "literal"

    def resolve(self, variables: Mapping[str, Any], where: str) -> Any:
        """Evaluates the value; ``where`` names it in error messages.

        Raises:
            EvaluationError: an expression inside failed.
        """
        kind = self._kind
        if kind == "literal":
            literal = self._literal
            if isinstance(literal, dict | list):
                return copy_json(literal)
            return literal
        if kind == "expr":
            assert self._expr is not None
            try:
                return self._expr.evaluate(variables)
            except CelEvaluationError as exc:
                raise EvaluationError(
                    f"{where}: expression `{self._expr.source}` failed: {exc}"
                ) from None
        if kind == "object":
            return {
                key: item.resolve(variables, where)
                for key, item in zip(self._keys, self._items, strict=True)
            }
        return [item.resolve(variables, where) for item in self._items]


def _is_expr(raw: Any) -> bool:
    return isinstance(raw, dict) and len(raw) == 1 and "$expr" in raw


def _has_expr(raw: Any) -> bool:
    if _is_expr(raw):
        return True
    if isinstance(raw, dict):
        return any(_has_expr(v) for v in raw.values())
    if isinstance(raw, list):
        return any(_has_expr(v) for v in raw)
    return False


def compile_value(raw: Any) -> Value:
    """Compiles a spec value; CEL errors were already reported by validation."""
    if not _has_expr(raw):
        return Value("literal", literal=raw)
    if _is_expr(raw):
        return Value("expr", expr=compile_expr(raw["$expr"]))
    if isinstance(raw, dict):
        keys = tuple(raw)
        return Value("object", keys=keys, items=tuple(compile_value(raw[k]) for k in keys))
    assert isinstance(raw, list)
    return Value("array", items=tuple(compile_value(v) for v in raw))


def set_path(context: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """Returns a new context with ``value`` at ``path``, sharing untouched branches.

    Copy-on-write keeps snapshots of earlier steps valid without deep copies.
    Missing objects along the path are created; a non-object in the way is an
    error rather than silently replaced.
    """
    head = path[0]
    updated = dict(context)
    if len(path) == 1:
        updated[head] = value
        return updated
    child = context.get(head)
    if child is None:
        child = {}
    elif not isinstance(child, dict):
        kind = type(child).__name__
        raise EvaluationError(
            f"cannot assign `{'.'.join(path)}`: `{head}` holds a {kind}, not an object"
        )
    updated[head] = set_path(child, path[1:], value)
    return updated
