"""Bearer-key authentication: the key decides the tenant, or the admin.

Tenant routes depend on ``tenant_id``; admin routes on ``admin``. The admin key
is refused on tenant routes and tenant keys on admin routes (403), so neither can
be used for the other's work by mistake. A missing, malformed, unknown or revoked
key is 401, with no hint which.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from statefleet.api.errors import ApiError
from statefleet.api.state import AppState, app_state
from statefleet.engine.runtime.tenants import authenticate

__all__ = ["Admin", "TenantId", "admin", "tenant_id"]

_bearer = HTTPBearer(auto_error=False, description="`sf_<keyId>_<secret>`, or the admin key")

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def _key(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise ApiError(401, "unauthorized", "missing or malformed API key", headers=_UNAUTHORIZED)
    return credentials.credentials


def _is_admin(state: AppState, key: str) -> bool:
    admin_key = state.settings.admin_key
    return admin_key is not None and hmac.compare_digest(key.encode(), admin_key.encode())


async def tenant_id(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The tenant whose key authorised this request."""
    key = _key(credentials)
    state = app_state(request)
    if _is_admin(state, key):
        raise ApiError(403, "forbidden", "the admin key cannot be used on tenant routes")
    async with state.pool.acquire() as connection:
        tenant = await authenticate(connection, key)
    if tenant is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key", headers=_UNAUTHORIZED)
    return tenant


async def admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Admits the admin key only."""
    key = _key(credentials)
    if not _is_admin(app_state(request), key):
        raise ApiError(403, "forbidden", "this route needs the admin key")


TenantId = Annotated[str, Depends(tenant_id)]
Admin = Depends(admin)
