"""Path ids: a malformed UUID names no row, so it answers the same 404 as a missing one.

A definition key in a path follows the identifier rule deploy applies, declared in the
OpenAPI document (``DefinitionKeyPath``); one that breaks it is a 400 naming ``key``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Path

from statefleet.api.errors import ApiError
from statefleet.engine.spec.identifiers import DEFINITION_ID

__all__ = ["DefinitionKeyPath", "parse_id"]

DefinitionKeyPath = Annotated[
    str, Path(pattern=DEFINITION_ID.pattern, max_length=DEFINITION_ID.max_length)
]


def parse_id(raw: str, code: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, code, f"{what} {raw!r} not found") from None
