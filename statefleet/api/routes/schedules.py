"""Schedules: start instances of a definition on a cron expression or every N seconds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from statefleet.api.auth import TenantId
from statefleet.api.jsonbody import StrictJsonRoute
from statefleet.api.responses import BODY_ERRORS, errors
from statefleet.api.routes._ids import parse_id
from statefleet.api.schedule_models import ScheduleIn, ScheduleList, ScheduleOut
from statefleet.api.state import app_state
from statefleet.engine.runtime.schedules import ScheduleRequest

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], route_class=StrictJsonRoute)

MAX_PAGE = 1000


@router.post("", response_model=ScheduleOut, status_code=201, responses=errors(*BODY_ERRORS, 422))
async def create(body: ScheduleIn, tenant: TenantId, request: Request) -> ScheduleOut:
    """A new schedule; its first tick is the first one after now.

    A cron expression that does not parse, an unknown time zone, definition or version,
    or neither or both of ``cron`` and ``every``, is a 422 ``invalid_schedule`` naming
    the field.
    """
    schedules = app_state(request).service.schedules
    created = await schedules.create(
        tenant,
        ScheduleRequest(
            definition_key=body.definition_key,
            version=body.version,
            cron=body.cron,
            every_seconds=body.every,
            timezone=body.timezone,
            input=body.input or {},
            overlap=body.overlap,
            catch_up=body.catch_up,
        ),
    )
    return ScheduleOut.of(created)


@router.get("", response_model=ScheduleList, responses=errors(400))
async def list_schedules(
    tenant: TenantId,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ScheduleList:
    """Newest first; pass ``nextCursor`` back as ``cursor`` for the next page."""
    page = await app_state(request).service.schedules.list(tenant, limit=limit, cursor=cursor)
    return ScheduleList(items=[ScheduleOut.of(v) for v in page.items], next_cursor=page.next_cursor)


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=errors(404))
async def get(schedule_id: str, tenant: TenantId, request: Request) -> ScheduleOut:
    ident = parse_id(schedule_id, "unknown_schedule", "schedule")
    return ScheduleOut.of(await app_state(request).service.schedules.get(tenant, ident))


@router.post("/{schedule_id}/pause", response_model=ScheduleOut, responses=errors(404))
async def pause(schedule_id: str, tenant: TenantId, request: Request) -> ScheduleOut:
    """Starts nothing until resumed; pausing twice is fine."""
    ident = parse_id(schedule_id, "unknown_schedule", "schedule")
    return ScheduleOut.of(await app_state(request).service.schedules.pause(tenant, ident))


@router.post("/{schedule_id}/resume", response_model=ScheduleOut, responses=errors(404))
async def resume(schedule_id: str, tenant: TenantId, request: Request) -> ScheduleOut:
    """Ticks again from the first tick after now; ticks missed while paused are not run."""
    ident = parse_id(schedule_id, "unknown_schedule", "schedule")
    return ScheduleOut.of(await app_state(request).service.schedules.resume(tenant, ident))


@router.delete("/{schedule_id}", status_code=204, response_class=Response, responses=errors(404))
async def delete(schedule_id: str, tenant: TenantId, request: Request) -> Response:
    """Removes the schedule; instances it started keep running."""
    ident = parse_id(schedule_id, "unknown_schedule", "schedule")
    await app_state(request).service.schedules.delete(tenant, ident)
    return Response(status_code=204)
