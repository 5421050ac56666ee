"""The request guard: refuses bad requests before the application sees them.

One pure ASGI middleware, outermost in the app, so that every route gets the same rules and
nothing is buffered first:

- **Body size** (RELIABILITY 16): a declared ``Content-Length`` over the limit is answered 413
  without reading a byte; a streamed (chunked) body is counted as it arrives and the request is
  cut off with 413 as soon as it crosses the limit. Upload routes get their own, larger limit.
- **Media type**: a JSON route's body must be ``application/json`` (or ``+json``): 415
  otherwise, so a cross-site ``text/plain`` form post cannot reach a JSON route. A route
  that takes records also accepts NDJSON (``application/x-ndjson``, ``application/jsonl``).
- **Host** (RFC 9112, DNS rebinding): exactly one ``Host`` header, naming an allowed host:
  400 otherwise. The rule is ``loopml.core.hosts.host_refusal``, which the gateway processes
  apply too, so every listening process refuses alike.
- **Origin** (CSRF): a browser request whose ``Origin`` is not an allowed host gets 403.

Every refusal is the stable JSON error body of ``loopml.core.errors``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopml.core.errors import (
    BadRequestError,
    LoopmlError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnsupportedMediaTypeError,
    error_headers,
)
from loopml.core.hosts import host_name, host_refusal
from loopml.serve.oip import error_body_for

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON_TYPE = re.compile(r"^application/([\w.+-]+\+)?json\s*(;.*)?$", re.IGNORECASE)
_NDJSON_TYPE = re.compile(r"^application/(x-ndjson|jsonl)\s*(;.*)?$", re.IGNORECASE)
_FORM_TYPE = re.compile(r"^application/x-www-form-urlencoded\s*(;.*)?$", re.IGNORECASE)


def _never(_: str) -> bool:
    return False


@dataclass(frozen=True)
class GuardConfig:
    """What the guard enforces.

    Attributes:
        max_body_bytes: limit for every body not on a raw-body route.
        max_upload_bytes: limit for raw-body (streamed upload) routes.
        raw_body_route: tells whether a path takes a raw body (any media type, upload limit).
        allowed_hosts: host names accepted in ``Host`` and ``Origin``; ``*`` allows any.
        ndjson_route: tells whether a path also takes NDJSON (records; body limit as JSON).
        inference_route: tells whether a path is served by the gateway, where a body with no
            Content-Type is taken as JSON: Open Inference Protocol clients (tritonclient)
            send none. A body that names another type is still refused.
        form_route: tells whether a path takes an HTML form (``application/x-www-form-
            urlencoded``; body limit as JSON): the portal's forms.
    """

    max_body_bytes: int
    max_upload_bytes: int
    raw_body_route: Callable[[str], bool]
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    ndjson_route: Callable[[str], bool] = _never
    inference_route: Callable[[str], bool] = _never
    form_route: Callable[[str], bool] = _never


def is_inference_path(path: str) -> bool:
    """Whether ``path`` is one the gateway serves: the root Open Inference Protocol paths
    (``/v2/...``) and ``[/projects/{p}]/deployments/{name}/...``."""
    if path.startswith("/v2/"):
        return True
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "deployments":
        return True
    return len(parts) > 5 and parts[1] == "projects" and parts[3] == "deployments"


def _host_of(origin: str) -> str:
    """The host name in an origin URL, lowercased, without the port."""
    return host_name(urlsplit(origin).netloc if "://" in origin else origin)


class RequestGuardMiddleware:
    """Pure ASGI middleware enforcing ``GuardConfig``; see the module docstring."""

    def __init__(self, app: ASGIApp, config: GuardConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope["headers"])
        error: LoopmlError | None = host_refusal(scope["headers"], self.config.allowed_hosts)
        if error is None:
            error = self._check_headers(scope, headers)
        if error is not None:
            await send_error(send, error, scope["path"])
            return
        if "content-length" in headers and "transfer-encoding" not in headers:
            # The declared length was checked against the limit above, and the server's
            # parser delivers no byte past it: there is nothing left to count.
            await self.app(scope, receive, send)
            return
        raw = self.config.raw_body_route(scope["path"])
        limit = self.config.max_upload_bytes if raw else self.config.max_body_bytes
        await _LimitedRequest(self.app, limit)(scope, receive, send)

    def _check_headers(self, scope: Scope, headers: dict[str, str]) -> LoopmlError | None:
        allowed = self.config.allowed_hosts
        if allowed and "*" not in allowed:
            origin = headers.get("origin")
            if origin is not None and origin != "null" and _host_of(origin) not in allowed:
                return PermissionDeniedError(
                    f"cross-origin request from {origin[:100]!r} refused",
                    details={"reason": "origin_not_allowed"},
                )
        return self._check_body_headers(scope, headers)

    def _check_body_headers(self, scope: Scope, headers: dict[str, str]) -> LoopmlError | None:
        raw = self.config.raw_body_route(scope["path"])
        limit = self.config.max_upload_bytes if raw else self.config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return BadRequestError(f"Content-Length {declared[:30]!r} is not a number")
            if int(declared) > limit:
                return _too_large(limit)
        has_body = (declared is not None and int(declared) > 0) or ("transfer-encoding" in headers)
        if has_body and not raw and scope["method"] in _BODY_METHODS:
            return self._check_media_type(scope["path"], headers.get("content-type", ""))
        return None

    def _check_media_type(self, path: str, content_type: str) -> LoopmlError | None:
        if _JSON_TYPE.match(content_type):
            return None
        if not content_type and self.config.inference_route(path):
            return None
        if self.config.form_route(path):
            if _FORM_TYPE.match(content_type):
                return None
            return UnsupportedMediaTypeError(
                "expected a form (Content-Type: application/x-www-form-urlencoded), got "
                f"{content_type[:100] or 'no Content-Type'!r}",
                details={"expected": "application/x-www-form-urlencoded"},
            )
        got = repr(content_type[:100] or "no Content-Type")
        if not self.config.ndjson_route(path):
            return UnsupportedMediaTypeError(
                f"expected a JSON body (Content-Type: application/json), got {got}",
                details={"expected": "application/json"},
            )
        if not _NDJSON_TYPE.match(content_type):
            return UnsupportedMediaTypeError(
                "expected records as a JSON array of objects (Content-Type: "
                "application/json) or one object per line (application/x-ndjson or "
                f"application/jsonl), got {got}",
                details={
                    "expected": [
                        "application/json",
                        "application/x-ndjson",
                        "application/jsonl",
                    ]
                },
            )
        return None


class _LimitedRequest:
    """Counts body bytes as the app reads them; past the limit, the answer becomes 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.received = 0
        self.exceeded = False
        self.response_started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def limited_receive() -> Message:
            if self.exceeded:
                raise _too_large(self.limit)
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.exceeded = True
                    raise _too_large(self.limit)
            return message

        async def guarded_send(message: Message) -> None:
            if self.exceeded and not self.response_started:
                # Whatever the app made of the cut-off body (FastAPI turns a failed body read
                # into a 400), the caller must learn the real reason: the size.
                self.response_started = True
                await send_error(send, _too_large(self.limit), scope["path"])
                return
            if self.exceeded:
                return
            if message["type"] == "http.response.start":
                self.response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not self.exceeded:
                raise
            if not self.response_started:
                await send_error(send, _too_large(self.limit), scope["path"])


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body is larger than the limit of {limit} bytes",
        details={"limit_bytes": limit},
    )


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}


async def send_error(send: Send, error: LoopmlError, path: str) -> None:
    """Answer ``error`` with the stable body (the protocol's on Open Inference paths)."""
    # Open Inference Protocol paths (the gateway's) answer the protocol's error body.
    body = orjson.dumps(error_body_for(path, error))
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(
                    (name.lower().encode(), value.encode())
                    for name, value in error_headers(error.code, error.message).items()
                ),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
