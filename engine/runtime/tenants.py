"""Tenants and their API keys: creation, listing, revocation and authentication.

A key is ``sf_<keyId>_<secret>``. The key id is public and globally unique (it finds
the row); the secret is 32 random bytes of which only a SHA-256 is stored. Because
the secret has 256 bits of entropy, a fast hash is as safe as a slow password hash,
and authenticating a request costs one indexed read. The comparison of hashes is
constant-time so response timing says nothing about how much of a secret matched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime

from statefleet.engine.record import record
from statefleet.engine.store.db import Connection
from statefleet.engine.store.queries import load_queries

__all__ = [
    "ApiKeyInfo",
    "CreatedKey",
    "UnknownTenant",
    "authenticate",
    "create_key",
    "create_tenant",
    "list_keys",
    "revoke_key",
]

SQL = load_queries("api.sql")

_KEY = re.compile(r"^sf_(?P<key_id>[a-z0-9]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")
_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class UnknownTenant(LookupError):
    """No tenant has this id."""


@record
class CreatedKey:
    """A new key: ``api_key`` is shown once and cannot be recovered later."""

    tenant_id: str
    key_id: str
    api_key: str


@record
class ApiKeyInfo:
    key_id: str
    created_at: datetime
    revoked_at: datetime | None


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return slug or "tenant"


def _new_key(tenant_id: str) -> tuple[CreatedKey, bytes]:
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    digest = hashlib.sha256(secret.encode()).digest()
    return CreatedKey(tenant_id, key_id, f"sf_{key_id}_{secret}"), digest


async def create_tenant(
    connection: Connection, name: str, *, tenant_id: str | None = None
) -> CreatedKey:
    """Creates a tenant and its first key, in one transaction.

    The id defaults to a slug of ``name`` plus a random suffix, so two tenants with
    one name never collide and ids stay readable in logs.

    Raises:
        ValueError: ``name`` is blank or ``tenant_id`` is not a lower-case slug.
        asyncpg.UniqueViolationError: ``tenant_id`` is taken.
    """
    if not name.strip():
        raise ValueError("a tenant needs a non-empty name")
    tenant_id = tenant_id or f"{_slug(name)}-{secrets.token_hex(4)}"
    if not _TENANT_ID.match(tenant_id):
        raise ValueError(f"tenant id {tenant_id!r} is not a lower-case slug")
    created, digest = _new_key(tenant_id)
    async with connection.transaction():
        await connection.execute(SQL["insert_tenant"], tenant_id, name.strip())
        await connection.execute(SQL["insert_api_key"], tenant_id, created.key_id, digest)
    return created


async def _check_tenant(connection: Connection, tenant_id: str) -> None:
    if await connection.fetchrow(SQL["get_tenant"], tenant_id) is None:
        raise UnknownTenant(f"no tenant {tenant_id!r}")


async def create_key(connection: Connection, tenant_id: str) -> CreatedKey:
    """Adds a key to a tenant (keys rotate by creating one, then revoking the old).

    Raises:
        UnknownTenant: no such tenant.
    """
    await _check_tenant(connection, tenant_id)
    created, digest = _new_key(tenant_id)
    await connection.execute(SQL["insert_api_key"], tenant_id, created.key_id, digest)
    return created


async def list_keys(connection: Connection, tenant_id: str) -> list[ApiKeyInfo]:
    """A tenant's keys, oldest first, revoked ones included (never their secrets).

    Raises:
        UnknownTenant: no such tenant.
    """
    await _check_tenant(connection, tenant_id)
    return [
        ApiKeyInfo(r["key_id"], r["created_at"], r["revoked_at"])
        for r in await connection.fetch(SQL["list_api_keys"], tenant_id)
    ]


async def revoke_key(connection: Connection, tenant_id: str, key_id: str) -> bool:
    """Revokes a key for good; False when the tenant has no such key. Idempotent."""
    return await connection.fetchrow(SQL["revoke_api_key"], tenant_id, key_id) is not None


async def authenticate(connection: Connection, api_key: str) -> str | None:
    """The tenant id of a valid, unrevoked key; None for anything else."""
    match = _KEY.match(api_key)
    if match is None:
        return None
    row = await connection.fetchrow(SQL["find_api_key"], match["key_id"])
    digest = hashlib.sha256(match["secret"].encode()).digest()
    if row is None:
        # Same work either way, so an unknown key id is not faster than a wrong secret.
        hmac.compare_digest(digest, bytes(32))
        return None
    if not hmac.compare_digest(digest, bytes(row["secret_sha256"])) or row["revoked_at"]:
        return None
    tenant_id: str = row["tenant_id"]
    return tenant_id
