"""HTTP plumbing of the model server: inference ids, metrics per request, bodies, errors.

``ObserveMiddleware`` is the one pure ASGI middleware: it gives every request an inference
id (a safe client ``X-Request-Id``, else a new one), puts it on every response
(``X-Inference-Id``; JSON bodies carry it too), and records the request's route, status and
latency. Nothing is logged per request.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopml.core.errors import (
    BadRequestError,
    LoopmlError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    error_headers,
)
from loopml.core.ids import new_id
from loopml.serve.metrics import ServerMetrics
from loopml.serve.oip import SAFE_ID as SAFE_ID
from loopml.serve.oip import MethodNotAllowedError as MethodNotAllowedError
from loopml.serve.oip import error_body_for, safe_id
from loopml.serve.server.batching import OverloadedError

INFERENCE_ID_HEADER = "X-Inference-Id"
REQUEST_ID_HEADER = b"x-request-id"
_JSON_TYPE = re.compile(r"application/([\w.+-]+\+)?json", re.IGNORECASE)
_BINARY_EXTENSION = "inference-header-content-length"
_UNMATCHED = "unmatched"


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response written by orjson (NumPy arrays included)."""
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def error_response(request: Request, error: LoopmlError) -> Response:
    """The error body for ``error`` (the V2 one on V2 paths, see ``loopml.serve.oip``), plus
    the inference id."""
    state = request.scope.setdefault("state", {})
    state["error_code"] = error.code
    headers = error_headers(error.code, error.message)
    if isinstance(error, OverloadedError):
        headers["Retry-After"] = "1"
    body = {**error_body_for(request.url.path, error), "inference_id": state.get("inference_id")}
    return json_response(body, error.status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's JSON body, refused with 413 past ``limit`` bytes before it is buffered.

    Raises:
        PayloadTooLargeError: a declared or actual body larger than ``limit``.
        UnsupportedMediaTypeError: a Content-Type that is not JSON (pickle included), or the
            binary tensor extension.
    """
    headers = request.headers
    media = headers.get("content-type", "").split(";")[0].strip()
    if media and not _JSON_TYPE.fullmatch(media):
        raise UnsupportedMediaTypeError(
            f"the body must be JSON (Content-Type: application/json), got {media[:100]!r}",
            details={"expected": "application/json"},
        )
    if _BINARY_EXTENSION in headers:
        raise UnsupportedMediaTypeError(
            "the binary tensor data extension is not supported: send the tensors as JSON data",
            details={"header": _BINARY_EXTENSION},
        )
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def decode_json(body: bytes) -> Any:
    """``body`` decoded by orjson.

    Raises:
        BadRequestError: the body is not valid JSON.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(
            f"the body is not valid JSON: {exc}", details={"reason": str(exc)[:300]}
        ) from None


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the body is larger than the limit of {limit} bytes: send fewer rows per request",
        details={"limit": limit},
    )


class ObserveMiddleware:
    """Inference id on every request and response; metrics for every request."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["started"] = started
        state["inference_id"] = _client_id(scope) or new_id()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                identity = (b"x-inference-id", state["inference_id"].encode())
                message["headers"] = [*message.get("headers", ()), identity]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", _UNMATCHED)
            code = state.get("error_code") or (f"http_{status}" if status >= 400 else None)
            self.metrics.observe_request(label, status, time.perf_counter() - started, code)


def _client_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return safe_id(value.decode("latin-1"))
    return None
