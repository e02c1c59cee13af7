"""Deploying definitions: validated once, versioned per (tenant, key), never changed."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

import orjson

from statefleet.engine.record import record
from statefleet.engine.spec import SpecValidationError, validate_spec
from statefleet.engine.spec.limits import DEFAULT_SPEC_LIMITS, SpecLimits, check_limits
from statefleet.engine.store.db import Connection, Record
from statefleet.engine.store.queries import load_queries

__all__ = [
    "Definition",
    "deploy_definition",
    "get_definition",
    "list_definitions",
    "spec_checksum",
]

SQL = load_queries("definitions.sql")


@record
class Definition:
    id: uuid.UUID
    tenant_id: str
    key: str
    version: int
    spec: dict[str, Any]
    checksum: str
    created_at: datetime
    created: bool = False

    @classmethod
    def from_record(cls, record: Record, created: bool = False) -> Definition:
        return cls(
            id=record["id"],
            tenant_id=record["tenant_id"],
            key=record["key"],
            version=record["version"],
            spec=record["spec"],
            checksum=record["checksum"],
            created_at=record["created_at"],
            created=created,
        )


def spec_checksum(spec: Any) -> str:
    """SHA-256 of the spec's canonical JSON (sorted keys), so key order does not matter."""
    return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def deploy_definition(
    connection: Connection,
    tenant_id: str,
    spec: Any,
    key: str | None = None,
    *,
    limits: SpecLimits = DEFAULT_SPEC_LIMITS,
) -> Definition:
    """Stores ``spec`` as the next version of ``key`` (default: the spec's ``id``).

    The same spec deployed again returns the version it already has. ``limits``
    bound its size (``engine/spec/limits.py``); they are checked first, so a spec
    far too big is refused before its CEL is compiled.

    Raises:
        SpecValidationError: the spec is invalid or over a limit (nothing is written).
    """
    over = check_limits(spec, limits)
    if over:
        raise SpecValidationError(over)
    model = validate_spec(spec)
    key = key or model.id
    checksum = spec_checksum(spec)
    async with connection.transaction():
        await connection.execute(SQL["lock_definition_key"], tenant_id, key)
        found = await connection.fetchrow(
            SQL["find_definition_by_checksum"], tenant_id, key, checksum
        )
        if found is not None:
            return Definition.from_record(found)
        record = await connection.fetchrow(
            SQL["insert_next_definition_version"], tenant_id, key, spec, checksum
        )
        assert record is not None
        return Definition.from_record(record, created=True)


async def get_definition(
    connection: Connection, tenant_id: str, key: str, version: int | None = None
) -> Definition | None:
    if version is None:
        record = await connection.fetchrow(SQL["get_latest_definition"], tenant_id, key)
    else:
        record = await connection.fetchrow(SQL["get_definition_version"], tenant_id, key, version)
    return None if record is None else Definition.from_record(record)


async def list_definitions(connection: Connection, tenant_id: str) -> list[Definition]:
    """The latest version of every key of the tenant."""
    return [
        Definition.from_record(r)
        for r in await connection.fetch(SQL["list_definitions"], tenant_id)
    ]
