"""Request plumbing of the gateway: which deployment a path names, reading the body, and
JSON and error answers (V2 error bodies on V2 paths)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from loopml.core.deployments import DEPLOYMENT_NAME_PATTERN
from loopml.core.errors import LoopmlError, NotFoundError, ServiceUnavailableError, error_headers
from loopml.core.names import DEFAULT_PROJECT, PROJECT_NAME_PATTERN
from loopml.serve.gateway.routing import Routes
from loopml.serve.oip import MethodNotAllowedError, error_body_for

_JSON_TYPE = [(b"content-type", b"application/json")]


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(path: str, error: LoopmlError) -> Response:
    headers = error_headers(error.code, error.message)
    if isinstance(error, ServiceUnavailableError):
        headers["Retry-After"] = "1"
    response = json_response(error_body_for(path, error), error.status)
    response.headers.update(headers)
    return response


class ProxiedResponse(Response):
    """A replica's answer as the client gets it: the headers are encoded once, here, and the
    body is the replica's bytes as they came (Starlette's ``Response`` would copy and check
    each header, and look for a background task, on the hot path)."""

    def __init__(self, content: bytes, status: int, headers: Mapping[str, str]) -> None:
        self.body = content
        self.status_code = status
        self.background: BackgroundTask | None = None
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if "content-type" not in headers:
            raw += _JSON_TYPE
        raw.append((b"content-length", str(len(content)).encode("ascii")))
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body})


async def read_body(request: Request) -> bytes:
    """The request's body, read from the server's ``receive`` as it comes (what
    ``Request.body`` does, without its wrapping; a client gone mid-body raises as there)."""
    body = getattr(request, "_body", None)
    if isinstance(body, bytes):  # already read (by a check before the handler)
        return body
    body = await _received(request)
    request._body = body  # as ``Request.body`` keeps it, for a later read
    return body


async def _received(request: Request) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def state(scope: Scope) -> dict[str, Any]:
    """The request's state as a plain dict: what ``request.state`` reads and writes, without
    the ``State`` object built around it on each access."""
    found: dict[str, Any] = scope.setdefault("state", {})
    return found


def key_of(request: Request) -> tuple[str, str] | None:
    key: tuple[str, str] | None = state(request.scope).get("gateway_key")
    return key


def named(request: Request) -> tuple[str, str]:
    project = request.path_params.get("project", DEFAULT_PROJECT)
    name = request.path_params["name"]
    if not PROJECT_NAME_PATTERN.fullmatch(project) or not DEPLOYMENT_NAME_PATTERN.fullmatch(name):
        raise no_deployment(project, name)
    state(request.scope)["gateway_key"] = (project, name)
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
