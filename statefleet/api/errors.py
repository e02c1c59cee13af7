"""Every error answer is ``{"error": {"code", "message"}}`` (docs/api.md, "Errors").

Engine exceptions map to codes here, in one table, so routes raise or let the
service raise, and never build error bodies themselves. FastAPI's own 422 for a
body that does not match its schema becomes the contract's 400 ``invalid_request``
(or ``invalid_json`` when the body did not parse); anything unexpected becomes a
500 ``internal`` without details, logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from statefleet.api.jsonbody import InvalidJson
from statefleet.engine.runtime import (
    InstanceNotFound,
    InstanceNotRunning,
    TaskNotCompletable,
    UnknownDefinitionKey,
)
from statefleet.engine.runtime.schedules import InvalidSchedule, UnknownSchedule
from statefleet.engine.runtime.service import (
    InvalidCursor,
    TaskNotFound,
    UnknownBatch,
    UnknownDefinitionVersion,
)
from statefleet.engine.runtime.upgrade_plans import InvalidUpgrade, UnknownUpgrade
from statefleet.engine.spec import SpecValidationError

__all__ = ["ApiError", "JSONBody", "error_response", "install_error_handlers"]

log = logging.getLogger(__name__)


class JSONBody(JSONResponse):
    """orjson-rendered JSON (FastAPI's ``ORJSONResponse`` is deprecated as of 0.12x).

    A ``JSONResponse`` subclass so FastAPI documents each route's response model as
    its JSON answer (any other class is documented as an opaque string).
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class ApiError(Exception):
    """An answer other than success, raised anywhere below a route."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONBody:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = list(details)
    return JSONBody({"error": error}, status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _location(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "body")


def install_error_handlers(app: FastAPI) -> None:
    """Registers the handlers that give every failure the contract's shape."""

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    async def validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "invalid_json", "the request body is not valid JSON")
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = _location(first.get("loc", ()))
        details = [{"path": _location(e.get("loc", ())), "message": e.get("msg")} for e in errors]
        return error_response(
            400, "invalid_request", f"{where}: {first.get('msg')}", details=details
        )

    async def invalid_json(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidJson)
        details = [{"path": exc.path, "message": exc.message}]
        return error_response(400, "invalid_json", str(exc.detail), details=details)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    async def spec_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, SpecValidationError)
        details = [{"path": e.path, "message": e.message} for e in exc.errors]
        first = exc.errors[0] if exc.errors else None
        message = f"{first.path or '<root>'}: {first.message}" if first else "invalid spec"
        return error_response(422, "invalid_spec", message, details=details)

    def mapped(status: int, code: str) -> Any:
        async def handler(_: Request, exc: Exception) -> Response:
            return error_response(status, code, str(exc))

        return handler

    async def bad_data(_: Request, exc: Exception) -> Response:
        # Postgres refused a value the client sent (a NUL character in text or jsonb,
        # a number out of range): the transaction rolled back, and it is a 400.
        return error_response(400, "invalid_request", f"a value was refused: {exc}")

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error; the server logged the details")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(InvalidJson, invalid_json)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(SpecValidationError, spec_error)
    # Subclass before base class: Starlette picks the first match along the MRO.
    app.add_exception_handler(UnknownDefinitionVersion, mapped(404, "unknown_version"))
    app.add_exception_handler(UnknownDefinitionKey, mapped(404, "unknown_definition"))
    app.add_exception_handler(InstanceNotFound, mapped(404, "unknown_instance"))
    app.add_exception_handler(InstanceNotRunning, mapped(409, "instance_finished"))
    app.add_exception_handler(TaskNotFound, mapped(404, "unknown_task"))
    app.add_exception_handler(UnknownUpgrade, mapped(404, "unknown_upgrade"))

    async def invalid_upgrade(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidUpgrade)
        details = [{"path": exc.path, "message": exc.message}]
        return error_response(422, "invalid_upgrade", str(exc), details=details)

    app.add_exception_handler(InvalidUpgrade, invalid_upgrade)

    async def invalid_schedule(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidSchedule)
        details = [{"path": exc.path, "message": exc.message}]
        return error_response(422, "invalid_schedule", str(exc), details=details)

    app.add_exception_handler(InvalidSchedule, invalid_schedule)
    app.add_exception_handler(UnknownSchedule, mapped(404, "unknown_schedule"))
    app.add_exception_handler(TaskNotCompletable, mapped(409, "task_not_completable"))
    app.add_exception_handler(UnknownBatch, mapped(404, "unknown_batch"))
    app.add_exception_handler(InvalidCursor, mapped(400, "invalid_request"))
    app.add_exception_handler(asyncpg.DataError, bad_data)
    app.add_exception_handler(Exception, unexpected)
