"""Instances: start, list, get, send events, cancel, history and tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from statefleet.api.auth import TenantId
from statefleet.api.errors import ApiError
from statefleet.api.jsonbody import StrictJsonRoute
from statefleet.api.models import (
    EventAccepted,
    EventIn,
    HistoryEntry,
    HistoryPage,
    InstanceList,
    InstanceOut,
    StartIn,
    TaskList,
    TaskOut,
)
from statefleet.api.responses import BODY_ERRORS, errors
from statefleet.api.routes._ids import IdempotencyKeyHeader, parse_id
from statefleet.api.state import app_state
from statefleet.engine.spec.identifiers import DEFINITION_ID

router = APIRouter(prefix="/v1/instances", tags=["instances"], route_class=StrictJsonRoute)

MAX_PAGE = 1000


@router.post(
    "",
    response_model=InstanceOut,
    status_code=201,
    responses={
        200: {"model": InstanceOut, "description": "the instance this idempotency key started"},
        **errors(*BODY_ERRORS, 404),
    },
)
async def start(
    body: StartIn,
    tenant: TenantId,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> InstanceOut:
    """201 for a new instance; 200 with the existing one when the idempotency key was used.

    The key comes from the ``Idempotency-Key`` header or the body's ``idempotencyKey``
    (the same value if both are given). ``priority`` (0..10, default 10): below 10 the
    start waits for the admitter, behind interactive work (docs/scheduling.md).
    """
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise ApiError(
            400,
            "invalid_request",
            "header Idempotency-Key and body idempotencyKey differ; send one of them",
        )
    service = app_state(request).service
    result = await service.start(
        tenant,
        body.definition_key,
        body.input,
        version=body.version,
        idempotency_key=idempotency_key or body.idempotency_key,
        priority=body.priority,
    )
    response.status_code = 201 if result.created else 200
    return InstanceOut.of(await service.get(tenant, result.instance_id))


@router.get("", response_model=InstanceList, responses=errors(400))
async def list_instances(
    tenant: TenantId,
    request: Request,
    definition_key: Annotated[
        str | None,
        Query(
            alias="definitionKey",
            pattern=DEFINITION_ID.pattern,
            max_length=DEFINITION_ID.max_length,
        ),
    ] = None,
    status: Literal["running", "done", "failed", "cancelled"] | None = None,
    created_after: Annotated[datetime | None, Query(alias="createdAfter")] = None,
    created_before: Annotated[datetime | None, Query(alias="createdBefore")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    id_prefix: Annotated[
        str | None, Query(alias="idPrefix", pattern=r"^[0-9A-Fa-f-]{1,36}$")
    ] = None,
) -> InstanceList:
    """Newest first; pass ``nextCursor`` back as ``cursor`` for the next page.
    ``idPrefix`` keeps the instances whose id starts with it (the console's search)."""
    page = await app_state(request).service.list_instances(
        tenant,
        definition_key=definition_key,
        status=status,
        created_after=created_after,
        created_before=created_before,
        limit=limit,
        cursor=cursor,
        id_prefix=id_prefix,
    )
    return InstanceList(items=[InstanceOut.of(v) for v in page.items], next_cursor=page.next_cursor)


@router.get("/{instance_id}", response_model=InstanceOut, responses=errors(404))
async def get(instance_id: str, tenant: TenantId, request: Request) -> InstanceOut:
    ident = parse_id(instance_id, "unknown_instance", "instance")
    return InstanceOut.of(await app_state(request).service.get(tenant, ident))


@router.post(
    "/{instance_id}/events",
    response_model=EventAccepted,
    status_code=202,
    responses=errors(*BODY_ERRORS, 404, 409),
)
async def send(
    instance_id: str, body: EventIn, tenant: TenantId, request: Request
) -> EventAccepted:
    """Accepted (durably queued), not yet applied; the same ``id`` twice is applied once."""
    ident = parse_id(instance_id, "unknown_instance", "instance")
    event_id = await app_state(request).service.send(
        tenant, ident, body.type, body.payload, event_id=body.id
    )
    return EventAccepted(event_id=event_id)


@router.post("/{instance_id}/cancel", response_model=InstanceOut, responses=errors(404, 409))
async def cancel(instance_id: str, tenant: TenantId, request: Request) -> InstanceOut:
    ident = parse_id(instance_id, "unknown_instance", "instance")
    return InstanceOut.of(await app_state(request).service.cancel(tenant, ident))


@router.get("/{instance_id}/history", response_model=HistoryPage, responses=errors(400, 404))
async def history(
    instance_id: str,
    tenant: TenantId,
    request: Request,
    after: Annotated[int, Query(ge=-1, le=2**62)] = -1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> HistoryPage:
    """Audit rows with ``seq > after``; ``nextCursor`` is the ``after`` of the next page."""
    ident = parse_id(instance_id, "unknown_instance", "instance")
    rows = await app_state(request).service.history(tenant, ident, after_seq=after, limit=limit)
    items = [HistoryEntry.model_validate(r) for r in rows]
    next_cursor = str(items[-1].seq) if len(items) == limit else None
    return HistoryPage(items=items, next_cursor=next_cursor)


@router.get("/{instance_id}/tasks", response_model=TaskList, responses=errors(404))
async def tasks(instance_id: str, tenant: TenantId, request: Request) -> TaskList:
    ident = parse_id(instance_id, "unknown_instance", "instance")
    rows = await app_state(request).service.tasks(tenant, ident)
    return TaskList(items=[TaskOut.of(r) for r in rows])
