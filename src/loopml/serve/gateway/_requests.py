"""Request plumbing of the gateway: which deployment a path names, the headers a replica
gets, and JSON and error answers (V2 error bodies on V2 paths)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from loopml.core.deployments import DEPLOYMENT_NAME_PATTERN
from loopml.core.errors import LoopmlError, NotFoundError, ServiceUnavailableError, error_headers
from loopml.core.names import DEFAULT_PROJECT, PROJECT_NAME_PATTERN
from loopml.serve.gateway.routing import Routes
from loopml.serve.oip import MethodNotAllowedError, error_body_for

_REQUEST_HEADERS = (b"content-type", b"accept", b"inference-header-content-length")


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(path: str, error: LoopmlError) -> Response:
    headers = error_headers(error.code, error.message)
    if isinstance(error, ServiceUnavailableError):
        headers["Retry-After"] = "1"
    response = json_response(error_body_for(path, error), error.status)
    response.headers.update(headers)
    return response


def passed_headers(request: Request) -> dict[str, str]:
    """The client's headers a replica needs (read from the raw list: no Headers object)."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in request.scope["headers"]
        if name in _REQUEST_HEADERS
    }


def key_of(request: Request) -> tuple[str, str] | None:
    key: tuple[str, str] | None = getattr(request.state, "gateway_key", None)
    return key


def named(request: Request) -> tuple[str, str]:
    project = request.path_params.get("project", DEFAULT_PROJECT)
    name = request.path_params["name"]
    if not PROJECT_NAME_PATTERN.fullmatch(project) or not DEPLOYMENT_NAME_PATTERN.fullmatch(name):
        raise no_deployment(project, name)
    request.state.gateway_key = (project, name)
    return project, name


def no_deployment(project: str, name: str) -> NotFoundError:
    return NotFoundError(
        f"no deployment {name[:100]!r} in project {project[:100]!r} is served by this "
        "server's gateway; see `loopml deployments list`",
        details={"project": project[:100], "deployment": name[:100]},
    )


def check_method(request: Request, expected: str) -> None:
    allowed = {expected, "HEAD"} if expected == "GET" else {expected}
    if request.method not in allowed:
        raise MethodNotAllowedError(
            f"method {request.method} is not allowed here; use {expected}",
            details={"allowed": expected},
        )


def has_ready(routes: Routes, pin: int | None = None) -> bool:
    revisions = [r for r in routes.revisions if pin is None or r.version == pin]
    return any(r.usable() for r in revisions)
