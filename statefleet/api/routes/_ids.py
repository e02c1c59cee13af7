"""Path ids: a malformed UUID names no row, so it answers the same 404 as a missing one.

A definition key in a path follows the identifier rule deploy applies, declared in the
OpenAPI document (``DefinitionKeyPath``); one that breaks it is a 400 naming ``key``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Header, Path

from statefleet.api.errors import ApiError
from statefleet.engine.spec.identifiers import DEFINITION_ID, IDEMPOTENCY_KEY

__all__ = ["DefinitionKeyPath", "IdempotencyKeyHeader", "parse_id"]

DefinitionKeyPath = Annotated[
    str, Path(pattern=DEFINITION_ID.pattern, max_length=DEFINITION_ID.max_length)
]
#: The ``Idempotency-Key`` request header of the starting routes: the same rule as the
#: body's ``idempotencyKey``.
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY.pattern,
        max_length=IDEMPOTENCY_KEY.max_length,
    ),
]


def parse_id(raw: str, code: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, code, f"{what} {raw!r} not found") from None
