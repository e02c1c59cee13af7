"""JSON names of Python values, for error messages that speak the user's language."""

from __future__ import annotations

__all__ = ["json_kind"]

_ARTICLES = {"array": "an array", "object": "an object", "null": "null"}


def json_kind(value: object, *, article: bool = False) -> str:
    """``"string"``, ``"number"``, ...; with ``article``: ``"a string"``, ``"an object"``."""
    if value is None:
        kind = "null"
    elif isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int | float):
        kind = "number"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list | tuple):
        kind = "array"
    elif isinstance(value, dict):
        kind = "object"
    else:
        return type(value).__name__
    return _ARTICLES.get(kind, f"a {kind}") if article else kind
