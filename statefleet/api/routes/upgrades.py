"""Upgrades: move running instances to another definition version (docs/upgrades.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from statefleet.api.auth import TenantId
from statefleet.api.jsonbody import StrictJsonRoute
from statefleet.api.responses import BODY_ERRORS, errors
from statefleet.api.routes._ids import DefinitionKeyPath, parse_id
from statefleet.api.state import app_state
from statefleet.api.upgrade_models import UpgradeIn, UpgradeOut
from statefleet.engine.runtime.upgrade_plans import UpgradeRequest

router = APIRouter(tags=["upgrades"], route_class=StrictJsonRoute)

#: A cursor is the last instance id of the previous page.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
Limit = Annotated[int, Query(ge=1, le=1000, description="Instance entries per page")]


@router.post(
    "/v1/definitions/{key}/upgrades",
    response_model=UpgradeOut,
    status_code=200,
    responses={
        202: {"model": UpgradeOut, "description": "an apply: planned, now moving (a job)"},
        **errors(*BODY_ERRORS, 404, 422),
    },
)
async def create_upgrade(
    key: DefinitionKeyPath,
    body: UpgradeIn,
    tenant: TenantId,
    request: Request,
    response: Response,
    limit: Limit = 100,
) -> UpgradeOut:
    """A dry run (200) reports a verdict per instance; an apply (202) also starts moving.

    The report holds the first ``limit`` instance entries; ``GET /v1/upgrades/{id}`` with
    ``cursor=nextCursor`` pages through the rest and reports an apply's progress.
    """
    report = await app_state(request).service.upgrades.create(
        tenant,
        key,
        UpgradeRequest(
            from_version=body.from_version,
            to_version=body.to_version,
            state_map=body.state_map or {},
            context_defaults=body.context_defaults or {},
            instance_ids=body.instance_ids,
            dry_run=body.dry_run,
            force=body.force,
        ),
        limit=limit,
    )
    response.status_code = 200 if body.dry_run else 202
    return UpgradeOut.of(report)


@router.get("/v1/upgrades/{upgrade_id}", response_model=UpgradeOut, responses=errors(400, 404))
async def get_upgrade(
    upgrade_id: str,
    tenant: TenantId,
    request: Request,
    cursor: Annotated[
        str | None, Query(pattern=UUID_PATTERN, description="nextCursor of the previous page")
    ] = None,
    limit: Limit = 100,
) -> UpgradeOut:
    """The request, its counts by verdict, an apply's progress, a page of instance entries."""
    ident = parse_id(upgrade_id, "unknown_upgrade", "upgrade")
    report = await app_state(request).service.upgrades.get(
        tenant, ident, cursor=cursor, limit=limit
    )
    return UpgradeOut.of(report)
