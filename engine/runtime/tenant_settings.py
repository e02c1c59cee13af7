"""Per-tenant settings: the ``tenants.settings`` JSON object (migration 0007).

Operators override process-wide defaults for one tenant through the admin API. The
object holds one key per concern, so settings added later (weights, concurrency
limits) sit beside the others without a new column:

    {"limits": {"maxStates": 200, "maxRegions": 50}}

Only overrides are stored, never the effective values: a default changed later
(``STATEFLEET_SPEC_MAX_*``) still reaches every tenant that did not override it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statefleet.engine.runtime.tenants import UnknownTenant
from statefleet.engine.spec.limits import SpecLimits
from statefleet.engine.store.db import Connection
from statefleet.engine.store.queries import load_queries

__all__ = ["LIMITS_KEY", "TenantLimits", "get_tenant_limits", "set_tenant_limits"]

SQL = load_queries("tenant_settings.sql")
#: The key of the spec limits in a tenant's settings.
LIMITS_KEY = "limits"


class TenantLimits:
    """A tenant's spec limits: the stored overrides and the effective values."""

    __slots__ = ("effective", "overrides")

    def __init__(self, defaults: SpecLimits, overrides: Mapping[str, Any]) -> None:
        self.overrides = dict(overrides)
        self.effective = defaults.with_overrides(self.overrides)


async def _settings(connection: Connection, tenant_id: str) -> dict[str, Any] | None:
    row = await connection.fetchrow(SQL["get_tenant_settings"], tenant_id)
    return None if row is None else dict(row["settings"])


async def get_tenant_limits(
    connection: Connection, tenant_id: str, defaults: SpecLimits, *, strict: bool = False
) -> TenantLimits:
    """The limits that apply to ``tenant_id``'s deploys.

    A tenant without a row (ids used directly by embedded callers and tests) gets
    the defaults, unless ``strict``. Overrides that no longer make sense (a name
    a later version dropped) are ignored rather than failing every deploy.

    Raises:
        UnknownTenant: ``strict`` and no such tenant.
    """
    settings = await _settings(connection, tenant_id)
    if settings is None:
        if strict:
            raise UnknownTenant(f"no tenant {tenant_id!r}")
        return TenantLimits(defaults, {})
    stored = settings.get(LIMITS_KEY)
    overrides = stored if isinstance(stored, dict) else {}
    try:
        return TenantLimits(defaults, overrides)
    except ValueError:
        return TenantLimits(defaults, {})


async def set_tenant_limits(
    connection: Connection,
    tenant_id: str,
    defaults: SpecLimits,
    overrides: Mapping[str, int],
) -> TenantLimits:
    """Replaces ``tenant_id``'s limit overrides (an empty mapping: back to the defaults).

    Raises:
        ValueError: an unknown limit or a value that is not a positive integer.
        UnknownTenant: no such tenant.
    """
    limits = TenantLimits(defaults, overrides)  # checks before anything is written
    row = await connection.fetchrow(
        SQL["set_tenant_settings_key"], tenant_id, LIMITS_KEY, limits.overrides
    )
    if row is None:
        raise UnknownTenant(f"no tenant {tenant_id!r}")
    return limits
