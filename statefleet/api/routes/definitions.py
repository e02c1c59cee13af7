"""Definitions: deploy (validated, versioned), list, get, and draw as Mermaid."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse

from statefleet.api.auth import TenantId
from statefleet.api.errors import ApiError
from statefleet.api.jsonbody import StrictJsonRoute
from statefleet.api.models import DefinitionIn, DefinitionList, DefinitionOut
from statefleet.api.responses import BODY_ERRORS, errors
from statefleet.api.routes._ids import DefinitionKeyPath
from statefleet.api.state import app_state
from statefleet.engine.graph import to_mermaid
from statefleet.engine.spec import validate_spec

router = APIRouter(prefix="/v1/definitions", tags=["definitions"], route_class=StrictJsonRoute)

Version = Annotated[int, Query(ge=1, le=2**31 - 1)]


@router.post(
    "",
    response_model=DefinitionOut,
    status_code=201,
    responses={
        200: {"model": DefinitionOut, "description": "this exact spec was already deployed"},
        **errors(*BODY_ERRORS, 422),
    },
)
async def deploy(
    body: DefinitionIn, tenant: TenantId, request: Request, response: Response
) -> DefinitionOut:
    """201 for a new version; 200 when this exact spec is already deployed."""
    definition = await app_state(request).service.deploy(tenant, body.spec, body.key)
    response.status_code = 201 if definition.created else 200
    return DefinitionOut.of(definition)


@router.get("", response_model=DefinitionList, response_model_exclude_none=True, responses=errors())
async def list_definitions(tenant: TenantId, request: Request) -> DefinitionList:
    found = await app_state(request).service.definitions(tenant)
    return DefinitionList(items=[DefinitionOut.of(d, with_spec=False) for d in found])


@router.get("/{key}", response_model=DefinitionOut, responses=errors(400, 404))
async def latest(key: DefinitionKeyPath, tenant: TenantId, request: Request) -> DefinitionOut:
    return DefinitionOut.of(await app_state(request).service.definition(tenant, key))


@router.get("/{key}/versions/{version}", response_model=DefinitionOut, responses=errors(400, 404))
async def version(
    key: DefinitionKeyPath,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    tenant: TenantId,
    request: Request,
) -> DefinitionOut:
    return DefinitionOut.of(await app_state(request).service.definition(tenant, key, version))


@router.get(
    "/{key}/graph",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **errors(400, 404),
    },
)
async def graph(
    key: DefinitionKeyPath,
    tenant: TenantId,
    request: Request,
    version: Version | None = None,
    active: Annotated[str | None, Query(max_length=10_000)] = None,
) -> PlainTextResponse:
    """Mermaid ``stateDiagram-v2`` source of the (latest or given) version.

    ``active``: an instance's state value as JSON (its ``value``); those states get
    the class ``active``, which is how the console highlights where an instance is.
    """
    definition = await app_state(request).service.definition(tenant, key, version)
    value = None
    if active is not None:
        try:
            value = orjson.loads(active)
        except orjson.JSONDecodeError:
            raise ApiError(400, "invalid_request", "active: not JSON") from None
    try:
        return PlainTextResponse(to_mermaid(validate_spec(definition.spec), active=value))
    except ValueError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
