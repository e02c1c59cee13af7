"""A tenant's scheduling settings: its fair-share weight and its per-task-type limits.

Stored under ``"scheduling"`` in ``tenants.settings`` (see ``tenant_settings.py``):

    {"scheduling": {"weight": 3,
                    "taskLimits": {"EMAIL": {"concurrency": 5, "perSecond": 50}}}}

The admitter (``admission.py``) reads them on every pass, so a change applies to work
already waiting, not only to work created afterwards. A tenant without a row, or
without the key, has weight 1 and no limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from statefleet.engine.runtime.tenants import UnknownTenant
from statefleet.engine.store.db import Connection
from statefleet.engine.store.queries import load_queries

__all__ = [
    "ALL_TYPES",
    "SCHEDULING_KEY",
    "TaskLimit",
    "TenantScheduling",
    "get_tenant_scheduling",
    "load_schedulings",
    "set_tenant_scheduling",
]

SQL = load_queries("tenant_settings.sql")
#: The key of the scheduling settings in a tenant's settings.
SCHEDULING_KEY = "scheduling"
#: The ``taskLimits`` entry that limits all of a tenant's tasks together.
ALL_TYPES = "*"


class TaskLimit(BaseModel):
    """At most ``concurrency`` attempts running at once, at most ``perSecond`` starts/s.

    Either may be left out (no limit of that kind); one of them must be given.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    concurrency: int | None = Field(default=None, ge=1, le=1_000_000)
    per_second: float | None = Field(default=None, alias="perSecond", gt=0, le=1_000_000)

    def model_post_init(self, context: Any, /) -> None:
        if self.concurrency is None and self.per_second is None:
            raise ValueError("a task limit needs concurrency, perSecond or both")


class TenantScheduling(BaseModel):
    """``weight``: the tenant's share of the engine against other tenants with waiting
    work (1 to 1000, default 1); ``taskLimits``: limits per task type, across the cluster,
    and under ``"*"`` one for all the tenant's tasks together."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    weight: int = Field(default=1, ge=1, le=1000)
    task_limits: dict[str, TaskLimit] = Field(default_factory=dict, alias="taskLimits")

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


DEFAULT_SCHEDULING = TenantScheduling()


def _parse(stored: Any) -> TenantScheduling:
    """Stored settings a later version no longer accepts count as none (never fail work)."""
    if not isinstance(stored, dict):
        return DEFAULT_SCHEDULING
    try:
        return TenantScheduling.model_validate(stored)
    except ValidationError:
        return DEFAULT_SCHEDULING


async def get_tenant_scheduling(connection: Connection, tenant_id: str) -> TenantScheduling:
    """The tenant's scheduling settings.

    Raises:
        UnknownTenant: no such tenant.
    """
    row = await connection.fetchrow(SQL["get_tenant_settings"], tenant_id)
    if row is None:
        raise UnknownTenant(f"no tenant {tenant_id!r}")
    return _parse(dict(row["settings"]).get(SCHEDULING_KEY))


async def set_tenant_scheduling(
    connection: Connection, tenant_id: str, scheduling: TenantScheduling
) -> TenantScheduling:
    """Replaces the tenant's scheduling settings (weight and every task limit).

    Raises:
        UnknownTenant: no such tenant.
    """
    row = await connection.fetchrow(
        SQL["set_tenant_settings_key"], tenant_id, SCHEDULING_KEY, scheduling.as_json()
    )
    if row is None:
        raise UnknownTenant(f"no tenant {tenant_id!r}")
    return scheduling


async def load_schedulings(
    connection: Connection, tenant_ids: Sequence[str]
) -> dict[str, TenantScheduling]:
    """Each tenant's settings (the default for a tenant without a row), in one query."""
    found = {
        r["tenant_id"]: _parse(r["scheduling"])
        for r in await connection.fetch(SQL["get_schedulings"], list(tenant_ids))
    }
    return {t: found.get(t, DEFAULT_SCHEDULING) for t in tenant_ids}
