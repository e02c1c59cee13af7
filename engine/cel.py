"""CEL (Common Expression Language) for guards and ``$expr`` values.

Every expression is compiled once, when a spec is loaded, and evaluated many
times. We use Google's official runtime (``cel-expr-python``, bindings over
cel-cpp) rather than a pure-Python port: it type-checks at compile time, so an
undeclared variable or ``"a" + 1`` is a load error with a column marker, and it
evaluates ~100k expressions/s on one core here.

The three variables a workflow expression can see are declared ``dyn``:
``context`` (the instance context), ``event`` (``{"type", "payload"}``) and
``params`` (a named guard's or action's parameters). A task's limit key
(``task.limits.key``) also sees ``input``, the task's resolved input; it is
compiled in a second environment so that ``input`` anywhere else stays an
undeclared variable, reported when the spec is loaded.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping
from typing import Any, Final

from cel_expr_python import cel as _cel

__all__ = ["CelCompileError", "CelError", "CelEvaluationError", "Expression", "compile_expr"]

VARIABLES: Final = ("context", "event", "params")
TASK_KEY_VARIABLES: Final = (*VARIABLES, "input")

_ENV: Final = _cel.NewEnv(variables=dict.fromkeys(VARIABLES, _cel.Type.DYN))
_TASK_KEY_ENV: Final = _cel.NewEnv(variables=dict.fromkeys(TASK_KEY_VARIABLES, _cel.Type.DYN))
_ERROR_TYPE: Final = _cel.Type.ERROR


class CelError(Exception):
    """Base class of CEL failures; the message is meant for a person."""


class CelCompileError(CelError):
    """The expression does not parse or does not type-check."""


class CelEvaluationError(CelError):
    """The expression failed at run time (missing key, division by zero, ...)."""


def _clean(message: str) -> str:
    # cel-cpp prefixes its status code ("INVALID_ARGUMENT: ERROR: <input>:1:3: ...")
    # and suffixes it again; keep the human part and the caret lines.
    for prefix in ("INVALID_ARGUMENT: ", "ERROR: "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    message = message.replace(" [INVALID_ARGUMENT]", "")
    return message.strip()


def _to_json(value: Any) -> Any:
    """Turns a CEL result into JSON data (timestamps and durations become strings)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, datetime.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, datetime.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, bytes):
        raise CelEvaluationError("bytes values cannot be stored in JSON")
    raise CelEvaluationError(f"unsupported CEL result type {type(value).__name__}")


class Expression:
    """A compiled CEL expression; immutable and safe to share."""

    __slots__ = ("_program", "source")

    def __init__(self, source: str, program: _cel.Expression) -> None:
        self.source = source
        self._program = program

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Evaluates over ``context``/``event``/``params`` (and ``input``); returns JSON data.

        Raises:
            CelEvaluationError: the expression failed or yielded a non-JSON value.
        """
        try:
            result = self._program.eval(data=variables)
        except RuntimeError as exc:  # the runtime raises for some argument errors
            raise CelEvaluationError(_clean(str(exc))) from None
        if result.type() == _ERROR_TYPE:
            raise CelEvaluationError(_clean(str(result.plain_value())))
        return _to_json(result.plain_value())

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


@functools.lru_cache(maxsize=8192)
def compile_expr(source: str, *, with_input: bool = False) -> Expression:
    """Parses and type-checks ``source``; cached, so validation and compilation share work.

    ``with_input`` declares ``input`` as well (a task's ``limits.key``).

    Raises:
        CelCompileError: with cel-cpp's message, which points at the column.
    """
    if not isinstance(source, str) or not source.strip():
        raise CelCompileError("a CEL expression must be a non-empty string")
    try:
        program = (_TASK_KEY_ENV if with_input else _ENV).compile(source)
    except RuntimeError as exc:
        raise CelCompileError(_clean(str(exc))) from None
    return Expression(source, program)
