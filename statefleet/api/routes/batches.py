"""Batches: thousands of instances of one definition per call, and their progress."""

from __future__ import annotations

from fastapi import APIRouter, Request

from statefleet.api.auth import TenantId
from statefleet.api.jsonbody import StrictJsonRoute
from statefleet.api.models import BatchCreated, BatchIn, BatchOut
from statefleet.api.routes._ids import parse_id
from statefleet.api.state import app_state

router = APIRouter(prefix="/v1/batches", tags=["batches"], route_class=StrictJsonRoute)


@router.post("", response_model=BatchCreated, status_code=201)
async def start_batch(body: BatchIn, tenant: TenantId, request: Request) -> BatchCreated:
    """Inserted in bulk (chunks of 5,000 per transaction), not one round trip each."""
    batch_id, count = await app_state(request).service.start_batch(
        tenant, body.definition_key, body.inputs, version=body.version
    )
    return BatchCreated(batch_id=batch_id, count=count)


@router.get("/{batch_id}", response_model=BatchOut)
async def progress(batch_id: str, tenant: TenantId, request: Request) -> BatchOut:
    ident = parse_id(batch_id, "unknown_batch", "batch")
    return BatchOut.of(await app_state(request).service.batch_progress(tenant, ident))
