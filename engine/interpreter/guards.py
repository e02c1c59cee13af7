"""Guards compiled to small trees of CEL predicates.

A guard must yield a bool: anything else is an evaluation error naming the
guard, never a silent ``false`` — a typo'd field compared with ``==`` should
stop the instance loudly, not route it down the wrong branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statefleet.engine.cel import CelEvaluationError, Expression
from statefleet.engine.interpreter.values import EvaluationError

__all__ = ["Guard", "GuardAll", "GuardAny", "GuardNot", "GuardPredicate"]


class GuardPredicate:
    """One CEL predicate: a named guard (with its params) or an inline ``expr``."""

    __slots__ = ("expr", "label", "params")

    def __init__(self, expr: Expression, params: Mapping[str, Any] | None, label: str) -> None:
        self.expr = expr
        self.params = dict(params) if params else {}
        self.label = label

    def test(self, context: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
        try:
            result = self.expr.evaluate({"context": context, "event": event, "params": self.params})
        except CelEvaluationError as exc:
            raise EvaluationError(f"guard {self.label} failed: {exc}") from None
        if result is not True and result is not False:
            raise EvaluationError(
                f"guard {self.label} yielded {result!r} ({type(result).__name__}), not a bool"
            )
        return result


class GuardAll:
    __slots__ = ("guards",)

    def __init__(self, guards: tuple[Guard, ...]) -> None:
        self.guards = guards

    def test(self, context: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
        return all(g.test(context, event) for g in self.guards)


class GuardAny:
    __slots__ = ("guards",)

    def __init__(self, guards: tuple[Guard, ...]) -> None:
        self.guards = guards

    def test(self, context: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
        return any(g.test(context, event) for g in self.guards)


class GuardNot:
    __slots__ = ("guard",)

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def test(self, context: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
        return not self.guard.test(context, event)


Guard = GuardPredicate | GuardAll | GuardAny | GuardNot
