"""Path ids: a malformed id names no row, so it answers the same 404 as a missing one."""

from __future__ import annotations

import uuid

from statefleet.api.errors import ApiError

__all__ = ["parse_id"]


def parse_id(raw: str, code: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, code, f"{what} {raw!r} not found") from None
