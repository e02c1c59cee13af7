"""The fixed library of CEL expressions and their JavaScript equivalents.

The XState oracle must evaluate guards and ``$expr`` values exactly as CEL
would, but writing a CEL interpreter in JavaScript would be a second
implementation to get wrong. Instead every expression a generated or
conformance spec may use comes from this table, where each CEL text is paired
by hand with a JavaScript text of the same meaning *on the contexts and events
the generator produces* (ints stay ints, keys that CEL reads exist). The
translator refuses any CEL text that is not here, so a new expression cannot
reach the oracle without a reviewed JavaScript twin.

JavaScript sees ``context``, ``event`` (internal XState events have no
``payload``: the contract treats it as ``{}``, hence ``event.payload ?? {}``)
and ``params``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BOOL_EXPRS",
    "BUDGET_EXPRS",
    "CEL_TO_JS",
    "COUNTER_EXPRS",
    "INT_EXPRS",
    "PARAM_BOOL_EXPRS",
    "PARAM_VALUE_EXPRS",
    "STRING_EXPRS",
    "to_js",
]

_P: Final = "(event.payload ?? {})"

#: Guards over context and event (never ``params``).
BOOL_EXPRS: Final[dict[str, str]] = {
    "context.n > 2": "context.n > 2",
    "context.n < 3": "context.n < 3",
    "context.n >= 1": "context.n >= 1",
    "context.n % 2 == 0": "context.n % 2 === 0",
    "context.k == 0": "context.k === 0",
    "context.k > context.n": "context.k > context.n",
    "context.f": "context.f",
    "!context.f": "!context.f",
    'context.s == "hi"': 'context.s === "hi"',
    "size(context.s) > 2": "context.s.length > 2",
    "context.d.x == 0": "context.d.x === 0",
    'event.type == "A"': 'event.type === "A"',
    'event.type.startsWith("order.")': 'event.type.startsWith("order.")',
    "has(event.payload.x)": f'"x" in {_P}',
    "has(event.payload.x) && event.payload.x > 1": f'("x" in {_P}) && {_P}.x > 1',
    "has(event.payload.x) && event.payload.x == context.n": (
        f'("x" in {_P}) && {_P}.x === context.n'
    ),
    "true": "true",
    "false": "false",
}

#: Guards of eventless transitions: ``t`` only ever grows, so these always stop.
COUNTER_EXPRS: Final[dict[str, str]] = {
    "context.t < 1": "context.t < 1",
    "context.t < 2": "context.t < 2",
    "context.t < 3": "context.t < 3",
    "context.t < 6": "context.t < 6",
}

#: The budget of handlers that raised events reach: ``u`` only ever grows.
BUDGET_EXPRS: Final[dict[str, str]] = {"context.u < 6": "context.u < 6"}

#: Guards of named guards that take params (always referenced with these params).
PARAM_BOOL_EXPRS: Final[dict[str, str]] = {
    "context.n >= params.min": "context.n >= params.min",
    "event.type == params.type": "event.type === params.type",
}

#: Int-valued expressions (only over int context fields, so CEL stays in ``int``).
INT_EXPRS: Final[dict[str, str]] = {
    "context.n": "context.n",
    "context.n + 1": "context.n + 1",
    "context.n + context.k": "context.n + context.k",
    "context.k + 2": "context.k + 2",
    "context.t + 1": "context.t + 1",
    "context.u + 1": "context.u + 1",
    "size(context.s)": "context.s.length",
    "has(event.payload.x) ? event.payload.x : 0": f'("x" in {_P}) ? {_P}.x : 0',
    "context.d.x + 1": "context.d.x + 1",
}

#: String-valued expressions.
STRING_EXPRS: Final[dict[str, str]] = {
    'context.s + "!"': 'context.s + "!"',
    '"k-" + string(context.n)': '"k-" + String(context.n)',
    "event.type": "event.type",
}

#: Other values: bools, lists, maps.
_OTHER_VALUE_EXPRS: Final[dict[str, str]] = {
    "!context.f": "!context.f",
    "[context.n, context.s]": "[context.n, context.s]",
    '{"n": context.n, "type": event.type}': '({"n": context.n, "type": event.type})',
    "context.d": "context.d",
    "context": "context",
}

#: Values of named actions that take params (always referenced with these params).
PARAM_VALUE_EXPRS: Final[dict[str, str]] = {
    "params.to": "params.to",
    '"task-" + params.to': '"task-" + params.to',
}

CEL_TO_JS: Final[dict[str, str]] = {
    **BOOL_EXPRS,
    **COUNTER_EXPRS,
    **BUDGET_EXPRS,
    **PARAM_BOOL_EXPRS,
    **INT_EXPRS,
    **STRING_EXPRS,
    **_OTHER_VALUE_EXPRS,
    **PARAM_VALUE_EXPRS,
}


def to_js(cel: str, extra: dict[str, str] | None = None) -> str:
    """Returns the JavaScript twin of ``cel`` from the library (or ``extra``).

    Raises:
        KeyError: ``cel`` has no reviewed twin; add one rather than guessing.
    """
    if extra and cel in extra:
        return extra[cel]
    try:
        return CEL_TO_JS[cel]
    except KeyError:
        raise KeyError(f"CEL expression {cel!r} has no JavaScript twin in expressions.py") from None
