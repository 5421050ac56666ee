"""The token check on the gateway's serving paths, with authentication on.

The gateway's routes (``/deployments/{name}/predict``, ``.../v2/...``, ``/v2/models/...``)
are served by its own fast path, not by the API's routers, so the permission dependency never
sees them. This middleware, just outside the fast path, asks for a bearer token with at least
the viewer role in the deployment's project (a token narrowed to ``deployment:<name>`` reaches
that deployment only), through ``TokenCache``: one store lookup per token every few seconds,
not one per request. A deployment whose spec says ``auth: none`` is let through without a
token; the gateway knows that from the routes its target publishes (in memory, swapped on
every change of the deployment), so that check costs no database round trip either. The
server-level V2 paths (``/v2``, ``/v2/health/...``) and ``/metrics`` stay open, like
``/api/v1/health``. The caller let through is named in the request's scope (``CALLER``: the
principal as events name it, ``user:ada/token:<id>``), for the gateway's per-caller counts.

A request relayed by one of the platform's gateway processes (it carries their secret) is
answered with ``X-Loopml-Allowed: SECONDS;PROJECT;DEPLOYMENT;CALLER`` once its token is
allowed: the gateway process then serves that token's next calls to that deployment itself,
for no longer than the platform would remember the decision (so a revocation holds in the
same few seconds), and strips the header from what its client gets.
"""

from __future__ import annotations

import contextlib
import hmac
import re
from collections.abc import Callable

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopml.auth import service
from loopml.auth.cache import TokenCache
from loopml.auth.permissions import DEPLOYMENT, Action, Rule
from loopml.auth.ratelimit import FailureLimiter
from loopml.core.errors import LoopmlError, UnauthenticatedError
from loopml.platform.guard import send_error
from loopml.serve.gateway.metrics import CALLER
from loopml.serve.gateway.wire import ALLOWED_HEADER, SECRET_HEADER

_DEPLOYMENT = re.compile(
    r"^(?:/projects/(?P<project>[^/]+))?/deployments/(?P<name>[^/]+)/(?:predict|v2)(?:/|$)"
)
_ROOT_V2 = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/|$)")
_PREDICT = Rule(Action.READ, DEPLOYMENT)
_SECRET = SECRET_HEADER.encode()
_ALLOWED = ALLOWED_HEADER.encode()


def deployment_of(
    path: str, root_deployment: Callable[[str], str] | None = None
) -> tuple[str, str] | None:
    """``(project, deployment)`` a serving path addresses, or ``None`` for other paths.

    ``/v2/models/{name}`` may name a default-project deployment by a model it serves;
    ``root_deployment`` (the gateway's own rule) says which deployment that reaches, so a
    token narrowed to one deployment is matched on the deployment really called.
    """
    match = _DEPLOYMENT.match(path)
    if match:
        return match.group("project") or "default", match.group("name")
    match = _ROOT_V2.match(path)
    if match is None:
        return None
    name = match.group("name")
    if root_deployment is not None:
        with contextlib.suppress(LoopmlError):  # unknown: the gateway answers 404 itself
            name = root_deployment(name)
    return "default", name


class ServingAuthMiddleware:
    """Pure ASGI middleware enforcing the rules in the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        cache: TokenCache,
        failures: FailureLimiter,
        root_deployment: Callable[[str], str] | None = None,
        allows_anonymous: Callable[[str, str], bool] | None = None,
        gateway_secret: str | None = None,
    ) -> None:
        self.app = app
        self.cache = cache
        self.failures = failures
        self.root_deployment = root_deployment
        self.allows_anonymous = allows_anonymous or (lambda _project, _name: False)
        self._gateway_secret = gateway_secret.encode() if gateway_secret else None
        # (token, project, deployment) -> until when it was allowed, and the caller's name: a
        # repeated call skips even the role check (for as long as the token is remembered).
        self._allowed: dict[tuple[str, str, str], tuple[float, str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http = scope["type"] == "http"
        target = deployment_of(scope["path"], self.root_deployment) if http else None
        # ``auth: none``: open to anyone, with or without a token (none is checked).
        if target is not None and not self.allows_anonymous(*target):
            try:
                scope[CALLER] = caller = await self._check(scope, *target)
            except LoopmlError as error:
                await send_error(send, error, scope["path"])
                return
            if self._from_gateway(scope):
                send = self._telling(send, scope, target, caller)
        await self.app(scope, receive, send)

    def _from_gateway(self, scope: Scope) -> bool:
        secret = self._gateway_secret
        if secret is None:
            return False
        for name, value in scope["headers"]:
            if name == _SECRET:
                return hmac.compare_digest(value, secret)
        return False

    def _telling(self, send: Send, scope: Scope, target: tuple[str, str], caller: str) -> Send:
        """``send`` with the decision added to the answer's head, for the gateway process."""
        token = _bearer(scope) or ""
        allowed = self._allowed.get((token, *target))
        left = 0.0 if allowed is None else allowed[0] - self.cache.now()
        told = f"{max(left, 0.0):.3f};{target[0]};{target[1]};{caller}".encode("latin-1")

        async def telling(message: Message) -> None:
            if message["type"] == "http.response.start" and left > 0:
                message = {**message, "headers": [*message["headers"], (_ALLOWED, told)]}
            await send(message)

        return telling

    async def _check(self, scope: Scope, project: str, deployment: str) -> str:
        """The caller's name, once its token is allowed on the deployment."""
        token = _bearer(scope)
        if token is not None:
            allowed = self._allowed.get((token, project, deployment))
            if allowed is not None and allowed[0] > self.cache.now():
                return allowed[1]
        else:
            raise UnauthenticatedError(
                "authentication required: send Authorization: Bearer <token> (a token with "
                f"the viewer role in project {project!r}, or one narrowed to "
                f"deployment:{deployment})"
            )
        entry = self.cache.entry(token)
        if entry is None:
            source = scope["client"][0] if scope.get("client") else "unknown"
            self.failures.check(source)
            try:
                await anyio.to_thread.run_sync(self.cache.principal, token)
            except UnauthenticatedError:
                self.failures.fail(source)
                raise
            entry = self.cache.entry(token)
            if entry is None:  # remembered for less time than it took to get here
                raise UnauthenticatedError("the token could not be checked in time; retry")
        caller, fresh_until = entry
        service.authorize(caller, _PREDICT, project, deployment)
        if len(self._allowed) > 10_000:
            self._allowed.clear()
        # No longer than the token itself is remembered, so revocation still holds in 5 s.
        self._allowed[(token, project, deployment)] = (fresh_until, caller.actor)
        return caller.actor


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None
