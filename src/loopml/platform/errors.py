"""Maps every error to the one stable JSON body: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match, Mount

from loopml.core.errors import DiskFullError, LoopmlError, error_headers, invalid_request

log = logging.getLogger("loopml.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one shape of every error answer: the JSON body, and the same in two headers."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    all_headers = {**(headers or {}), **error_headers(code, message)}
    return JSONResponse(body, status_code=status, headers=all_headers)


async def _loopml_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoopmlError)
    if isinstance(exc, DiskFullError):
        running = getattr(request.app.state, "running", None)
        disk = running.disk if running is not None else None  # set by the platform's lifespan
        if disk is not None:
            disk.refused(str(exc.details.get("store", "unknown")))
    if exc.status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.details)


def _message_of(err: Mapping[str, Any]) -> str:
    # "JSON decode error" alone does not say what was wrong; the decoder's reason does.
    msg = str(err.get("msg", ""))
    ctx = err.get("ctx") or {}
    if err.get("type") == "json_invalid" and ctx.get("error"):
        return f"{msg}: {ctx['error']}"
    return msg


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = invalid_request({**err, "msg": _message_of(err)} for err in exc.errors())
    return error_response(error.status, error.code, error.message, error.details)


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    # The methods of the resource the path names: the first route whose path matches (the
    # one the router took, whatever the method), and every route with its path template.
    # Not every route that would match the path: ``/transforms/lineage`` (GET) is declared
    # before ``/transforms/{name}`` (GET, PUT, DELETE), and a PUT on it is no PUT of the
    # lineage resource. FastAPI keeps an included router as one entry of ``app.routes``, so
    # the routes are walked as FastAPI's own OpenAPI walk sees them (flattened, in order). A
    # mount (static files) takes any method and says nothing about this path.
    routes = [
        route
        for route in iter_route_contexts(request.app.router.routes)
        if not isinstance(route.original_route, Mount)
    ]
    scope = dict(request.scope)
    template = next(
        (route.path_format for route in routes if route.matches(scope)[0] != Match.NONE), None
    )
    methods: set[str] = set()
    for route in routes:
        if template is not None and route.path_format == template:
            methods |= set(route.methods or ())
    return ", ".join(method for method in _METHODS if method in methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and message == "Not Found":
        message = "no such route; see /api/v1/openapi.json for the API"
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
        message = f"method {request.method} not allowed here; allowed: {headers['Allow']}"
    return error_response(exc.status_code, code, message, headers=headers)


async def _client_gone(_: Request, __: Exception) -> Response:
    # The client went away (or the guard cut the body off): nobody reads this answer.
    return Response(status_code=400)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the stable error body."""
    app.add_exception_handler(LoopmlError, _loopml_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
