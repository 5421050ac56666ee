"""The permission check every API route runs when authentication is on.

One dependency, added to every router when the app is built: it finds the route's rule in
``loopml.auth.permissions`` (a route without one is refused: deny by default), reads the
bearer token, and answers 401 (no or bad credentials), 404 (a project the caller cannot see,
exactly as for one that does not exist) or 403 (seen, not allowed). Failed token checks are
counted per client address (429 past ``auth.login_failures_per_minute``).
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import Request

from loopml.auth import service
from loopml.auth.permissions import MLFLOW_PROJECT, Action, rule_for
from loopml.auth.ratelimit import FailureLimiter
from loopml.core.auth import Principal
from loopml.core.errors import PermissionDeniedError, UnauthenticatedError

# The gateway's root paths serve the default project.
_DEFAULT_PROJECT = "default"


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def client_source(request: Request) -> str:
    """The address failures are counted under."""
    return request.client.host if request.client else "unknown"


def limiter_of(request: Request) -> FailureLimiter:
    """The app's failure counter (one per app)."""
    limiter: FailureLimiter = request.app.state.auth_failures
    return limiter


def principal_of(request: Request) -> Principal | None:
    """The caller the check let through, or ``None`` with authentication off."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


async def enforce(request: Request) -> None:
    """Let the request through, or raise 401, 403, 404 or 429 (see the module docstring).

    Async, so that with authentication off it costs no worker-thread hop; the token lookup
    (a database read) runs in a worker thread.
    """
    ctx = request.app.state.ctx
    if not ctx.settings.auth.enabled:
        return
    route = request.scope.get("route")
    template = getattr(route, "path", None) or ""
    rule = rule_for(request.method, template)
    if rule is None:
        raise PermissionDeniedError(
            f"no permission rule for {request.method} {template}; refused by default"
        )
    if rule.action in (Action.PUBLIC, Action.WEBHOOK):
        return
    token = bearer_token(request)
    if token is None:
        raise UnauthenticatedError(
            "authentication required: send Authorization: Bearer <token> (set LOOPML_TOKEN, "
            "or run `loopml login`)"
        )
    source = client_source(request)
    limiter = limiter_of(request)
    limiter.check(source)
    try:
        caller = await anyio.to_thread.run_sync(
            service.authenticate, ctx.store, request.app.state.auth_key, token
        )
    except UnauthenticatedError:
        limiter.fail(source)
        raise
    params = request.path_params
    project = params.get(rule.project_param)
    if rule.project_param == MLFLOW_PROJECT:
        project = ctx.settings.mlflow.project
    elif project is None and template.startswith("/deployments/"):
        project = _DEFAULT_PROJECT
    resource = params.get(rule.resource[1]) if rule.resource else None
    service.authorize(caller, rule, project, resource)
    request.state.principal = caller
