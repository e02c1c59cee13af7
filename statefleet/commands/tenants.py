"""Operator commands on the database directly: ``tenants create`` and ``keys create|list|revoke``.

They need ``DATABASE_URL`` (or ``--database-url``), not a running API or the admin
key: whoever can reach the database already owns every tenant. A new key is printed
once; only its SHA-256 is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import click
import orjson

from statefleet.engine.runtime.tenants import (
    UnknownTenant,
    create_key,
    create_tenant,
    list_keys,
    revoke_key,
)
from statefleet.engine.store.db import Connection

__all__ = ["keys", "register", "tenants"]

T = TypeVar("T")

_database = click.option(
    "--database-url",
    envvar="DATABASE_URL",
    required=True,
    help="Postgres DSN (default: $DATABASE_URL).",
)
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def _run(database_url: str, work: Callable[[Connection], Awaitable[T]]) -> T:
    async def main() -> T:
        connection: asyncpg.Connection[Any] = await asyncpg.connect(database_url)
        try:
            return await work(connection)
        finally:
            await connection.close()

    try:
        return asyncio.run(main())
    except UnknownTenant as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise click.ClickException(f"database error: {exc}") from None


def _emit(data: dict[str, Any]) -> None:
    click.echo(orjson.dumps(data).decode())


@click.group()
def tenants() -> None:
    """Manage tenants (directly in the database)."""


@tenants.command("create")
@click.argument("name")
@_database
@_json
def tenants_create(name: str, database_url: str, as_json: bool) -> None:
    """Create tenant NAME and its first API key (shown once)."""
    try:
        created = _run(database_url, lambda c: create_tenant(c, name))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _emit({"tenantId": created.tenant_id, "apiKey": created.api_key})
    else:
        click.echo(f"tenant {created.tenant_id}")
        click.echo(f"api key {created.api_key}  (shown once: store it now)")


@click.group()
def keys() -> None:
    """Manage a tenant's API keys (directly in the database)."""


@keys.command("create")
@click.argument("tenant_id")
@_database
@_json
def keys_create(tenant_id: str, database_url: str, as_json: bool) -> None:
    """Add an API key to TENANT_ID (shown once)."""
    created = _run(database_url, lambda c: create_key(c, tenant_id))
    if as_json:
        _emit({"keyId": created.key_id, "apiKey": created.api_key})
    else:
        click.echo(f"api key {created.api_key}  (shown once: store it now)")


@keys.command("list")
@click.argument("tenant_id")
@_database
@_json
def keys_list(tenant_id: str, database_url: str, as_json: bool) -> None:
    """List TENANT_ID's keys (ids and dates, never secrets)."""
    found = _run(database_url, lambda c: list_keys(c, tenant_id))
    items = [
        {
            "keyId": k.key_id,
            "createdAt": k.created_at.isoformat(),
            "revokedAt": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in found
    ]
    if as_json:
        _emit({"items": items})
        return
    for item in items:
        state = f"revoked {item['revokedAt']}" if item["revokedAt"] else "active"
        click.echo(f"{item['keyId']}  created {item['createdAt']}  {state}")


@keys.command("revoke")
@click.argument("tenant_id")
@click.argument("key_id")
@_database
def keys_revoke(tenant_id: str, key_id: str, database_url: str) -> None:
    """Revoke KEY_ID of TENANT_ID for good (idempotent)."""
    if not _run(database_url, lambda c: revoke_key(c, tenant_id, key_id)):
        raise click.ClickException(f"tenant {tenant_id!r} has no key {key_id!r}")
    click.echo(f"revoked {key_id}")


def register(group: click.Group) -> None:
    group.add_command(tenants)
    group.add_command(keys)
