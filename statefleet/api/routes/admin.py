"""Admin-key routes: create tenants, create/list/revoke keys, a tenant's spec limits and
scheduling settings, read dead letters."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from statefleet.api.auth import Admin
from statefleet.api.errors import ApiError
from statefleet.api.jsonbody import StrictJsonRoute
from statefleet.api.models import (
    DeadLetter,
    DeadLetterList,
    KeyCreated,
    KeyInfo,
    KeyList,
    SpecLimitsIn,
    SpecLimitsOut,
    TenantCreated,
    TenantIn,
    TenantLimitsOut,
    TenantSchedulingIn,
    TenantSchedulingOut,
)
from statefleet.api.responses import BODY_ERRORS, errors
from statefleet.api.state import app_state
from statefleet.engine.runtime.tenant_settings import TenantLimits
from statefleet.engine.runtime.tenants import (
    UnknownTenant,
    create_key,
    create_tenant,
    list_keys,
    revoke_key,
)
from statefleet.engine.store.queries import load_queries

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Admin], route_class=StrictJsonRoute
)
OUTBOX_SQL = load_queries("outbox.sql")


def _unknown(tenant_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no tenant {tenant_id!r}")


@router.post(
    "/tenants", response_model=TenantCreated, status_code=201, responses=errors(*BODY_ERRORS)
)
async def new_tenant(body: TenantIn, request: Request) -> TenantCreated:
    """The first key is in this answer only; it cannot be read again."""
    async with app_state(request).pool.acquire() as connection:
        created = await create_tenant(connection, body.name)
    return TenantCreated(tenant_id=created.tenant_id, api_key=created.api_key)


@router.post(
    "/tenants/{tenant_id}/keys", response_model=KeyCreated, status_code=201, responses=errors(404)
)
async def new_key(tenant_id: str, request: Request) -> KeyCreated:
    async with app_state(request).pool.acquire() as connection:
        try:
            created = await create_key(connection, tenant_id)
        except UnknownTenant:
            raise _unknown(tenant_id) from None
    return KeyCreated(key_id=created.key_id, api_key=created.api_key)


@router.get("/tenants/{tenant_id}/keys", response_model=KeyList, responses=errors(404))
async def keys(tenant_id: str, request: Request) -> KeyList:
    async with app_state(request).pool.acquire() as connection:
        try:
            found = await list_keys(connection, tenant_id)
        except UnknownTenant:
            raise _unknown(tenant_id) from None
    return KeyList(
        items=[
            KeyInfo(key_id=k.key_id, created_at=k.created_at, revoked_at=k.revoked_at)
            for k in found
        ]
    )


@router.delete(
    "/tenants/{tenant_id}/keys/{key_id}",
    status_code=204,
    response_class=Response,
    responses=errors(404),
)
async def revoke(tenant_id: str, key_id: str, request: Request) -> Response:
    async with app_state(request).pool.acquire() as connection:
        if not await revoke_key(connection, tenant_id, key_id):
            raise ApiError(404, "not_found", f"no key {key_id!r} for tenant {tenant_id!r}")
    return Response(status_code=204)


def _limits_out(tenant_id: str, limits: TenantLimits) -> TenantLimitsOut:
    return TenantLimitsOut(
        tenant_id=tenant_id,
        limits=SpecLimitsOut.model_validate(limits.effective.as_json()),
        overrides=limits.overrides,
    )


@router.get("/tenants/{tenant_id}/limits", response_model=TenantLimitsOut, responses=errors(404))
async def tenant_limits(tenant_id: str, request: Request) -> TenantLimitsOut:
    """The spec limits a tenant's deploys are checked against, and its overrides."""
    try:
        found = await app_state(request).service.tenant_limits(tenant_id)
    except UnknownTenant:
        raise _unknown(tenant_id) from None
    return _limits_out(tenant_id, found)


@router.put(
    "/tenants/{tenant_id}/limits",
    response_model=TenantLimitsOut,
    responses=errors(*BODY_ERRORS, 404),
)
async def set_tenant_limits(
    tenant_id: str, body: SpecLimitsIn, request: Request
) -> TenantLimitsOut:
    """Replaces the tenant's overrides (fields left out take the defaults).

    Applies to deploys from now on; definitions already deployed are kept.
    """
    overrides = body.model_dump(by_alias=True, exclude_none=True)
    try:
        found = await app_state(request).service.set_tenant_limits(tenant_id, overrides)
    except UnknownTenant:
        raise _unknown(tenant_id) from None
    return _limits_out(tenant_id, found)


@router.get(
    "/tenants/{tenant_id}/scheduling",
    response_model=TenantSchedulingOut,
    response_model_exclude_none=True,
    responses=errors(404),
)
async def tenant_scheduling(tenant_id: str, request: Request) -> TenantSchedulingOut:
    """The tenant's fair-share weight and its limits per task type (docs/scheduling.md)."""
    try:
        found = await app_state(request).service.tenant_scheduling(tenant_id)
    except UnknownTenant:
        raise _unknown(tenant_id) from None
    return TenantSchedulingOut.of(found)


@router.put(
    "/tenants/{tenant_id}/scheduling",
    response_model=TenantSchedulingOut,
    response_model_exclude_none=True,
    responses=errors(*BODY_ERRORS, 404),
)
async def set_tenant_scheduling(
    tenant_id: str, body: TenantSchedulingIn, request: Request
) -> TenantSchedulingOut:
    """Replaces the weight and every task limit (fields left out take the defaults: weight
    1, no limits). The admitter applies them on its next pass, to waiting work too."""
    try:
        found = await app_state(request).service.set_tenant_scheduling(tenant_id, body)
    except UnknownTenant:
        raise _unknown(tenant_id) from None
    return TenantSchedulingOut.of(found)


@router.get("/dead-letters", response_model=DeadLetterList, responses=errors(400))
async def dead_letters(
    request: Request, limit: int = Query(default=100, ge=1, le=1000)
) -> DeadLetterList:
    """Queue jobs that could never succeed (malformed pushes), newest first.

    They belong to no tenant reliably (a malformed body may not name one), so only
    the admin key reads them. ``body`` is the raw body as UTF-8 text (undecodable
    bytes replaced).
    """
    async with app_state(request).pool.acquire() as connection:
        rows = await connection.fetch(OUTBOX_SQL["list_dead_letters"], limit)
    return DeadLetterList(
        items=[
            DeadLetter(
                id=r["id"],
                tenant_id=r["tenant_id"],
                queue=r["queue"],
                reason=r["reason"],
                body=bytes(r["body"]).decode("utf-8", "replace"),
                created_at=r["created_at"],
            )
            for r in rows
        ]
    )
