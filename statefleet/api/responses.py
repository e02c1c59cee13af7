"""The error shape in the OpenAPI document, and the ``responses=`` of every operation.

Every route declares the statuses it can answer besides its success, with the real
error model, so a client generated from ``/openapi.json`` knows each one::

    @router.get("/{id}", response_model=TaskOut, responses=errors(404))

``errors`` adds 401 and 403 on its own (every ``/v1`` route takes a key), and
``BODY_ERRORS`` are the statuses any operation with a JSON body can answer (the body
is read and checked before the route runs). ``exact_openapi`` removes FastAPI's
automatic 422 ``HTTPValidationError`` answers: this API answers a request that does
not match its schema with 400 ``invalid_request`` (docs/api.md, "Errors"), and 422
only where a route declares it (a spec that is not a valid workflow).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

__all__ = [
    "BODY_ERRORS",
    "ErrorBody",
    "ErrorDetail",
    "ErrorResponse",
    "errors",
    "exact_openapi",
    "operation_id",
]


class ErrorDetail(BaseModel):
    """One problem: where (a JSON path, ``""`` for the whole body) and what."""

    path: str
    message: str


class ErrorBody(BaseModel):
    """``code`` is stable and meant for programs; ``message`` is for people."""

    code: str = Field(examples=["unknown_definition"])
    message: str
    details: list[ErrorDetail] | None = Field(
        default=None, description="Every problem found, for invalid_request and invalid_spec."
    )


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: ErrorBody


_DESCRIPTIONS: dict[int, str] = {
    400: "`invalid_json`: the body is not JSON, or holds a number beyond 64 bits, NaN or "
    "Infinity, or nests too deeply; `invalid_request`: the body, a query or a path "
    "parameter does not match this operation's schema (the message names the field)",
    401: "`unauthorized`: missing, malformed, unknown or revoked key",
    403: "`forbidden`: a tenant key on an admin route, or the admin key on a tenant route",
    404: "no such resource for this tenant (`unknown_definition`, `unknown_version`, "
    "`unknown_instance`, `unknown_task`, `unknown_batch`, `unknown_upgrade`, "
    "`unknown_schedule`, `not_found`)",
    408: "`request_timeout`: the body did not arrive in time",
    409: "the resource is not in a state that allows this (`instance_finished`, "
    "`task_not_completable`), or the idempotency key was used for another request "
    "(`idempotency_key_reused`)",
    413: "`payload_too_large`: the body is over the limit",
    422: "`invalid_spec`: the spec is JSON of the right shape but not a valid workflow; "
    "`invalid_upgrade`: the versions or the state map do not fit the definition; "
    "`invalid_schedule`: a cron expression, time zone, definition or version that does "
    "not make a schedule, or neither or both of `cron` and `every`; "
    "`error.details` lists every problem with its path",
    503: "a dependency is unavailable",
}

#: What any operation that reads a JSON body can answer before the route runs.
BODY_ERRORS: tuple[int, ...] = (400, 408, 413)


def errors(*statuses: int, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for an operation: each status with the error model.

    Args:
        statuses: the statuses this operation can answer besides its success.
        auth: add 401 and 403 (routes behind a key); False for the open routes.
    """
    wanted = set(statuses) | ({401, 403} if auth else set())
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}
        for status in sorted(wanted)
    }


def operation_id(route: APIRoute) -> str:
    """``<tag>_<function>`` (``instances_start``, ``tasks_complete``): short, unique names
    for generated clients, instead of FastAPI's default that repeats the path and method."""
    return f"{route.tags[0]}_{route.name}" if route.tags else route.name


def _is_fastapi_422(answer: Any) -> bool:
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def exact_openapi(app: FastAPI) -> None:
    """Makes ``app.openapi()`` drop the 422s FastAPI adds that this API never answers, and
    document errors as JSON on routes whose success is not (FastAPI files an extra
    response's model under the route's own media type, such as ``text/plain``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
            servers=app.servers,
        )
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                answers = operation.get("responses", {})
                if "422" in answers and _is_fastapi_422(answers["422"]):
                    del answers["422"]
                for status, answer in answers.items():
                    content = answer.get("content", {})
                    if status[0] in "45" and "application/json" not in content and content:
                        answer["content"] = {"application/json": next(iter(content.values()))}
        schemas = document.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
