"""Request bodies are parsed here, once, by one rule: JSON the store can keep exactly.

Python's ``json`` accepts ``NaN`` and ``Infinity`` and integers of any size; orjson,
which writes every value back (checksums, ``jsonb``), refuses non-finite numbers and
integers outside -2^63..2^64-1 and more than 254 levels of nesting. A body that holds
any of them would be stored as something else (``null``) or fail later with a 500, so
it is refused here with 400 ``invalid_json`` naming the JSON path of the value.

Every API route is a :class:`StrictJsonRoute` (each router passes ``route_class``), whose
request parses its body with :func:`parse_json` instead of ``json.loads``: one place for
every body (specs, inputs, events, task outputs, batches). The fast path is orjson
(C, and already strict about non-finite numbers); only a body orjson refuses, or that
holds a run of 19 or more digits (orjson would silently turn an integer beyond 64 bits
into a float), is parsed again by the standard library to find and name the value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any, Final

import orjson
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from statefleet.engine.spec import format_path

__all__ = ["MAX_DEPTH", "MAX_INT", "MIN_INT", "InvalidJson", "StrictJsonRoute", "parse_json"]

MIN_INT: Final = -(2**63)
MAX_INT: Final = 2**64 - 1
#: Containers nested deeper than this are refused: what is stored wraps a body's values
#: in a few more levels (a snapshot's ``context``), and orjson writes at most 254.
MAX_DEPTH: Final = 128

_LONG_DIGITS: Final = re.compile(rb"\d{19}")


class InvalidJson(HTTPException):
    """400 ``invalid_json``; ``path`` is the offending value's JSON path (``""``: the body).

    An ``HTTPException`` so FastAPI's body reader lets it through unchanged (it turns
    any other exception into a generic 400).
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(400, f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def parse_json(raw: bytes) -> Any:
    """The decoded body, or :class:`InvalidJson` naming what is wrong and where."""
    if not _LONG_DIGITS.search(raw):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _nests_deeper(value):
                _check(value)  # raises, naming where
            return value
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson("", f"the request body is not UTF-8: {exc.reason}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            "",
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, "
            f"column {exc.colno})",
        ) from None
    except RecursionError:
        raise InvalidJson("", f"the body nests deeper than {MAX_DEPTH} levels") from None
    _check(value)
    return value


#: The most container levels orjson writes (255 raise "Recursion limit reached"); a unit
#: test pins it, through MAX_DEPTH.
_ORJSON_MAX_DEPTH: Final = 254


def _nests_deeper(value: Any) -> bool:
    """Whether ``value`` (from orjson) nests containers deeper than ``MAX_DEPTH``.

    orjson does the counting in C: ``value`` wrapped in enough lists to leave exactly
    ``MAX_DEPTH`` levels within its limit either writes or raises (a 100,000-input batch
    costs one serialisation, tens of ms, instead of seconds of visiting every value).
    """
    wrapped = value
    for _ in range(_ORJSON_MAX_DEPTH - MAX_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return True
    return False


def _check(value: Any) -> None:
    """Raises for the first value the store cannot keep, in document order.

    Iterative, so a deeply nested body costs no Python stack.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, dict | list) and len(loc) >= MAX_DEPTH:
            raise InvalidJson(format_path(loc), f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            children: list[tuple[Any, tuple[str | int, ...]]] = []
            for key, child in item.items():
                _check_text(key, (*loc, key))
                children.append((child, (*loc, key)))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend((child, (*loc, i)) for i, child in reversed(list(enumerate(item))))
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                raise InvalidJson(
                    format_path(loc),
                    f"the integer {_short(item)} is outside -2^63..2^64-1 (send larger "
                    "numbers as strings)",
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidJson(
                    format_path(loc), f"{item} is not a finite number (JSON has no NaN or Infinity)"
                )
        elif isinstance(item, str):
            _check_text(item, loc)


def _check_text(text: str, loc: tuple[str | int, ...]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJson(format_path(loc), "a string holds a lone UTF-16 surrogate") from None


def _short(number: int) -> str:
    digits = str(number)
    return digits if len(digits) <= 40 else f"{digits[:20]}...({len(digits)} digits)"


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """An ``APIRoute`` whose JSON body is read by :func:`parse_json` (FastAPI's documented
    way to change how a route reads its request: a custom ``Request`` per route class)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict
