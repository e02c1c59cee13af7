"""Operator commands: ``tenants create|scheduling`` and ``keys create|list|revoke``.

Two ways in, chosen by what is at hand. With ``DATABASE_URL`` (or ``--database-url``)
they work on the database directly, with no running API: whoever can reach the
database already owns every tenant. Without it they call the admin routes of a running
server (``--url``, resolved as every client command resolves it) with the admin key:
``--admin-key`` / ``$STATEFLEET_ADMIN_KEY``, else the one ``statefleet up`` keeps in
``$STATEFLEET_HOME/credentials.json`` for its own server. So against ``statefleet up``
they need nothing at all. A new key is printed once; only its SHA-256 is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import asyncpg
import click
import orjson
from pydantic import ValidationError

from statefleet.client import Client, resolve_connection
from statefleet.commands.client_cmds import _client
from statefleet.credentials import credentials_path, read_credentials, same_server
from statefleet.engine.runtime.tenant_scheduling import (
    TaskLimit,
    TenantScheduling,
    get_tenant_scheduling,
    set_tenant_scheduling,
)
from statefleet.engine.runtime.tenants import (
    UnknownTenant,
    create_key,
    create_tenant,
    list_keys,
    revoke_key,
)
from statefleet.engine.store.db import Connection, init_connection

__all__ = ["keys", "register", "tenants"]

T = TypeVar("T")

_json = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def _database(command: Callable[..., Any]) -> Callable[..., Any]:
    """The ways in: ``--database-url``, else the admin API (``--url``, ``--admin-key``)."""
    for option in (
        click.option(
            "--admin-key",
            envvar="STATEFLEET_ADMIN_KEY",
            metavar="KEY",
            help="Admin key of the server at --url [default: $STATEFLEET_ADMIN_KEY, else "
            "the one `statefleet up` keeps for its own server].",
        ),
        click.option(
            "--url",
            metavar="URL",
            help="Server whose admin API to use when no database is given [default: as "
            "every client command: $STATEFLEET_URL, else the local `statefleet up`].",
        ),
        click.option(
            "--database-url",
            envvar="DATABASE_URL",
            help="Postgres DSN (default: $DATABASE_URL); work on the database directly.",
        ),
    ):
        command = option(command)
    return command


@contextmanager
def _admin(url: str | None, admin_key: str | None) -> Iterator[Client]:
    """A client of the admin routes, or a clear exit when no admin key is known."""
    server, _ = resolve_connection(url, None)
    if admin_key is None:
        saved = read_credentials()
        if saved is not None and saved.url and same_server(server, saved.url):
            admin_key = saved.admin_key
    if not admin_key:
        raise click.ClickException(
            f"no admin key for {server}: pass --admin-key or set STATEFLEET_ADMIN_KEY (the "
            f"server's own); against `statefleet up` it is in {credentials_path()}. Or give "
            "--database-url / DATABASE_URL to work on the database directly."
        )
    with _client(server, admin_key) as client:
        yield client


def _run(database_url: str, work: Callable[[Connection], Awaitable[T]]) -> T:
    async def main() -> T:
        connection: asyncpg.Connection[Any] = await asyncpg.connect(database_url)
        try:
            await init_connection(connection)  # jsonb as Python values, as the pool reads it
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
    """Manage tenants (in the database, or through the admin API)."""


@tenants.command("create")
@click.argument("name")
@_database
@_json
def tenants_create(
    name: str, database_url: str | None, url: str | None, admin_key: str | None, as_json: bool
) -> None:
    """Create tenant NAME and its first API key (shown once)."""
    if database_url:
        try:
            created = _run(database_url, lambda c: create_tenant(c, name))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        tenant_id, api_key = created.tenant_id, created.api_key
    else:
        with _admin(url, admin_key) as client:
            answer = client.create_tenant(name)
        tenant_id, api_key = answer.tenant_id, answer.api_key
    if as_json:
        _emit({"tenantId": tenant_id, "apiKey": api_key})
    else:
        click.echo(f"tenant {tenant_id}")
        click.echo(f"api key {api_key}  (shown once: store it now)")


def _task_limit(text: str) -> tuple[str, dict[str, Any]]:
    """``TYPE:concurrency=5,perSecond=50`` as ``("TYPE", {"concurrency": 5, "perSecond": 50.0})``.

    The type is everything before the last ``:`` (a type may hold ``:`` itself); the
    limit is checked by the engine's own model, so the CLI and the API refuse the same.
    """
    task_type, colon, pairs = text.rpartition(":")
    if not colon or not task_type:
        raise click.BadParameter(f"{text!r}: use TYPE:concurrency=N,perSecond=R")
    limit: dict[str, Any] = {}
    for pair in pairs.split(","):
        name, equals, value = pair.partition("=")
        name = name.strip()
        if not equals or name not in ("concurrency", "perSecond"):
            raise click.BadParameter(
                f"{text!r}: {pair.strip()!r} is not concurrency=N or perSecond=R"
            )
        try:
            limit[name] = int(value) if name == "concurrency" else float(value)
        except ValueError:
            raise click.BadParameter(f"{text!r}: {name} must be a number, not {value!r}") from None
    try:
        checked = TaskLimit.model_validate(limit)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or text}: {e['msg']}" for e in exc.errors()
        )
        raise click.BadParameter(f"{text!r}: {problems}") from None
    return task_type, checked.model_dump(by_alias=True, exclude_none=True)


def _parse_task_limits(
    _: click.Context, __: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, dict[str, Any]]]:
    return [_task_limit(value) for value in values]


def _show_scheduling(tenant_id: str, scheduling: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit(scheduling)
        return
    click.echo(f"tenant {tenant_id}  weight {scheduling['weight']}")
    limits: dict[str, dict[str, Any]] = scheduling["taskLimits"]
    if not limits:
        click.echo("no task limits")
    for task_type, limit in sorted(limits.items()):
        parts = [
            f"{name} {limit[name]:g}" for name in ("concurrency", "perSecond") if name in limit
        ]
        click.echo(f"{task_type}  {'  '.join(parts)}")


@tenants.command("scheduling")
@click.argument("tenant_id")
@click.option(
    "--weight",
    type=click.IntRange(1, 1000),
    help="The tenant's share of the engine against other tenants with waiting work.",
)
@click.option(
    "--task-limit",
    "task_limits",
    multiple=True,
    metavar="TYPE:concurrency=N,perSecond=R",
    callback=_parse_task_limits,
    help="Set TYPE's limit across the cluster (either part may be left out); repeatable.",
)
@click.option(
    "--clear-limits", is_flag=True, help="Remove every task limit (before --task-limit sets any)."
)
@_database
@_json
def tenants_scheduling(
    tenant_id: str,
    weight: int | None,
    task_limits: list[tuple[str, dict[str, Any]]],
    clear_limits: bool,
    database_url: str | None,
    url: str | None,
    admin_key: str | None,
    as_json: bool,
) -> None:
    """Show or change TENANT_ID's fair-share weight and task limits.

    Without options, prints them. With options, changes only what was given and keeps
    the rest (see docs/scheduling.md).
    """
    change = weight is not None or bool(task_limits) or clear_limits

    def changed(current: dict[str, Any]) -> dict[str, Any]:
        limits = {} if clear_limits else dict(current["taskLimits"])
        limits.update(task_limits)
        return {"weight": current["weight"] if weight is None else weight, "taskLimits": limits}

    if database_url:

        async def work(connection: Connection) -> TenantScheduling:
            current = await get_tenant_scheduling(connection, tenant_id)
            if not change:
                return current
            wanted = TenantScheduling.model_validate(changed(current.as_json()))
            return await set_tenant_scheduling(connection, tenant_id, wanted)

        result = _run(database_url, work).as_json()
    else:
        with _admin(url, admin_key) as client:
            current = client.get_tenant_scheduling(tenant_id).model_dump(
                by_alias=True, exclude_none=True
            )
            if change:
                wanted = changed(current)
                current = client.set_tenant_scheduling(
                    tenant_id, weight=wanted["weight"], task_limits=wanted["taskLimits"]
                ).model_dump(by_alias=True, exclude_none=True)
        result = current
    _show_scheduling(tenant_id, result, as_json)


@click.group()
def keys() -> None:
    """Manage a tenant's API keys (in the database, or through the admin API)."""


@keys.command("create")
@click.argument("tenant_id")
@_database
@_json
def keys_create(
    tenant_id: str,
    database_url: str | None,
    url: str | None,
    admin_key: str | None,
    as_json: bool,
) -> None:
    """Add an API key to TENANT_ID (shown once)."""
    if database_url:
        created = _run(database_url, lambda c: create_key(c, tenant_id))
        key_id, api_key = created.key_id, created.api_key
    else:
        with _admin(url, admin_key) as client:
            answer = client.create_key(tenant_id)
        key_id, api_key = answer.key_id, answer.api_key
    if as_json:
        _emit({"keyId": key_id, "apiKey": api_key})
    else:
        click.echo(f"api key {api_key}  (shown once: store it now)")


@keys.command("list")
@click.argument("tenant_id")
@_database
@_json
def keys_list(
    tenant_id: str,
    database_url: str | None,
    url: str | None,
    admin_key: str | None,
    as_json: bool,
) -> None:
    """List TENANT_ID's keys (ids and dates, never secrets)."""
    if database_url:
        found: list[Any] = _run(database_url, lambda c: list_keys(c, tenant_id))
    else:
        with _admin(url, admin_key) as client:
            found = client.keys(tenant_id)
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
def keys_revoke(
    tenant_id: str, key_id: str, database_url: str | None, url: str | None, admin_key: str | None
) -> None:
    """Revoke KEY_ID of TENANT_ID for good (idempotent)."""
    if database_url:
        if not _run(database_url, lambda c: revoke_key(c, tenant_id, key_id)):
            raise click.ClickException(f"tenant {tenant_id!r} has no key {key_id!r}")
    else:
        with _admin(url, admin_key) as client:
            client.revoke_key(tenant_id, key_id)
    click.echo(f"revoked {key_id}")


def register(group: click.Group) -> None:
    group.add_command(tenants)
    group.add_command(keys)
