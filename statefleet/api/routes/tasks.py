"""Tasks: list them across instances (the inbox), read one, and finish manual tasks
from outside (complete, fail, retry)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from statefleet.api.auth import TenantId
from statefleet.api.jsonbody import StrictJsonRoute
from statefleet.api.models import CompleteTaskIn, FailTaskIn, TaskOut, TaskPage
from statefleet.api.responses import BODY_ERRORS, errors
from statefleet.api.routes._ids import parse_id
from statefleet.api.state import app_state
from statefleet.engine.runtime import WorkflowService

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], route_class=StrictJsonRoute)


async def _existing(service: WorkflowService, tenant: str, raw: str) -> uuid.UUID:
    """The task's id, after checking it is the tenant's: 404 before any 409."""
    ident = parse_id(raw, "unknown_task", "task")
    await service.get_task(tenant, ident)
    return ident


MAX_PAGE = 1000


@router.get("", response_model=TaskPage, responses=errors(400))
async def list_tasks(
    tenant: TenantId,
    request: Request,
    status: Literal["pending", "running", "succeeded", "failed", "cancelled"] | None = None,
    task_type: Annotated[str | None, Query(alias="type", min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TaskPage:
    """The tenant's tasks across instances, oldest first; ``?status=pending&type=HUMAN``
    is the inbox. Pass ``nextCursor`` back as ``cursor`` for the next page."""
    page = await app_state(request).service.list_tasks(
        tenant, status=status, task_type=task_type, limit=limit, cursor=cursor
    )
    return TaskPage(items=[TaskOut.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/{task_id}", response_model=TaskOut, responses=errors(404))
async def get(task_id: str, tenant: TenantId, request: Request) -> TaskOut:
    ident = parse_id(task_id, "unknown_task", "task")
    return TaskOut.of(await app_state(request).service.get_task(tenant, ident))


@router.post(
    "/{task_id}/complete", response_model=TaskOut, responses=errors(*BODY_ERRORS, 404, 409)
)
async def complete(
    task_id: str, body: CompleteTaskIn, tenant: TenantId, request: Request
) -> TaskOut:
    """A pending ``HUMAN`` task succeeds with ``output``; its completion event follows."""
    service = app_state(request).service
    ident = await _existing(service, tenant, task_id)
    await service.complete_task(tenant, ident, body.output)
    return TaskOut.of(await service.get_task(tenant, ident))


@router.post("/{task_id}/fail", response_model=TaskOut, responses=errors(*BODY_ERRORS, 404, 409))
async def fail(task_id: str, body: FailTaskIn, tenant: TenantId, request: Request) -> TaskOut:
    """A pending ``HUMAN`` task fails: its failure event, or the instance fails."""
    service = app_state(request).service
    ident = await _existing(service, tenant, task_id)
    await service.fail_task(tenant, ident, body.error)
    return TaskOut.of(await service.get_task(tenant, ident))


@router.post("/{task_id}/retry", response_model=TaskOut, responses=errors(404, 409))
async def retry(task_id: str, tenant: TenantId, request: Request) -> TaskOut:
    """A failed task is pending again; an instance it failed runs again."""
    service = app_state(request).service
    ident = await _existing(service, tenant, task_id)
    await service.retry_task(tenant, ident)
    return TaskOut.of(await service.get_task(tenant, ident))
