"""Batches: thousands of instances of one definition per call, and their progress."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from statefleet.api.auth import TenantId
from statefleet.api.errors import ApiError
from statefleet.api.jsonbody import StrictJsonRoute
from statefleet.api.models import BatchCreated, BatchIn, BatchOut
from statefleet.api.responses import BODY_ERRORS, errors
from statefleet.api.routes._ids import IdempotencyKeyHeader, parse_id
from statefleet.api.state import app_state

router = APIRouter(prefix="/v1/batches", tags=["batches"], route_class=StrictJsonRoute)


@router.post(
    "",
    response_model=BatchCreated,
    status_code=201,
    responses={
        200: {"model": BatchCreated, "description": "the batch this Idempotency-Key started"},
        **errors(*BODY_ERRORS, 404, 409),
    },
)
async def start_batch(
    body: BatchIn,
    tenant: TenantId,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> BatchCreated:
    """Inserted in bulk (chunks of 5,000 per transaction), not one round trip each.

    With an ``Idempotency-Key`` header, the same key returns the same batch (200, and any
    instance a first, interrupted request did not insert is inserted now). ``priority``
    (0..10, default 5) orders its work behind interactive requests (docs/scheduling.md).
    """
    from statefleet.engine.runtime.service import IdempotencyKeyReused

    try:
        started = await app_state(request).service.start_batch(
            tenant,
            body.definition_key,
            body.inputs,
            version=body.version,
            idempotency_key=idempotency_key,
            priority=body.priority,
        )
    except IdempotencyKeyReused as exc:
        raise ApiError(409, "idempotency_key_reused", str(exc)) from None
    response.status_code = 201 if started.created else 200
    return BatchCreated(batch_id=started.batch_id, count=started.count)


@router.get("/{batch_id}", response_model=BatchOut, responses=errors(404))
async def progress(batch_id: str, tenant: TenantId, request: Request) -> BatchOut:
    ident = parse_id(batch_id, "unknown_batch", "batch")
    return BatchOut.of(await app_state(request).service.batch_progress(tenant, ident))
