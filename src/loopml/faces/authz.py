"""The permission check every API route runs when authentication is on.

One dependency, added to every router when the app is built: it finds the route's rule in
``loopml.auth.permissions`` (a route without one is refused: deny by default), reads the
bearer token, and answers 401 (no or bad credentials), 404 (a project the caller cannot see,
exactly as for one that does not exist) or 403 (seen, not allowed). Failed token checks are
counted per client address (429 past ``auth.login_failures_per_minute``).

For a token narrowed to one resource, the route's resource is read where its rule says: a
path parameter, the experiment of the run in the path (one store read, in a worker thread),
or a field of the JSON body (which FastAPI has already read and decoded, and keeps on the
request). A caller whose token is not narrowed to that kind of resource never pays for
either.

A request without an ``Authorization`` header may carry a browser session instead (the
``loopml_session`` cookie, ``loopml.auth.sessions``); a state change made with it also needs
the session's ``X-CSRF-Token``, or it is 403, because a browser sends that cookie on requests
other pages make it send too. A bearer header needs no CSRF token: no page can make a browser
send one to another origin.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio.to_thread
from fastapi import Request, Response

from loopml.auth import service, sessions
from loopml.auth.permissions import MLFLOW_PROJECT, Action, Rule, Source, rule_for
from loopml.auth.ratelimit import FailureLimiter
from loopml.core.auth import ApiToken, Principal
from loopml.core.errors import PermissionDeniedError, UnauthenticatedError
from loopml.faces.context import get_running
from loopml.store import MetadataStore

# The gateway's root paths serve the default project.
_DEFAULT_PROJECT = "default"
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def session_token(request: Request) -> str | None:
    """The browser session's token (its cookie), only on a request with no ``Authorization``
    header: a header, even a malformed one, always decides."""
    if "authorization" in request.headers:
        return None
    return request.cookies.get(sessions.SESSION_COOKIE) or None


def set_session_cookies(response: Response, request: Request, token: str, max_age: int) -> str:
    """Put a browser session on ``response``: its token in the ``HttpOnly`` session cookie
    and its CSRF token (returned) in the readable one; ``SameSite=Lax``, ``Secure`` over
    https."""
    csrf = sessions.csrf_token(get_running(request).auth_key, token)
    secure = request.url.scheme == "https"
    for name, value, http_only in (
        (sessions.SESSION_COOKIE, token, True),
        (sessions.CSRF_COOKIE, csrf, False),
    ):
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=secure,
            httponly=http_only,
            samesite="lax",
        )
    return csrf


def clear_session_cookies(response: Response, request: Request) -> None:
    """Remove both session cookies from the browser."""
    secure = request.url.scheme == "https"
    for name, http_only in ((sessions.SESSION_COOKIE, True), (sessions.CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=http_only, samesite="lax")


def password_login(
    request: Request,
    store: MetadataStore,
    user: str,
    password: str,
    *,
    lifetime: timedelta,
    name: str,
) -> ApiToken:
    """Trade a password for a token (``auth.service.login``), counting a failure against the
    caller's address (429 past ``auth.login_failures_per_minute``): the API's logins and the
    portal's login form. Blocking: call it from a worker thread."""
    source, limiter = client_source(request), limiter_of(request)
    limiter.check(source)
    try:
        return service.login(
            store, get_running(request).auth_key, user, password, lifetime=lifetime, token_name=name
        )
    except UnauthenticatedError:
        limiter.fail(source)
        raise


def client_source(request: Request) -> str:
    """The address failures are counted under."""
    return request.client.host if request.client else "unknown"


def limiter_of(request: Request) -> FailureLimiter:
    """The app's failure counter (one per app)."""
    return get_running(request).auth_failures


def principal_of(request: Request) -> Principal | None:
    """The caller the check let through, or ``None`` with authentication off."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


async def enforce(request: Request) -> None:
    """Let the request through, or raise 401, 403, 404 or 429 (see the module docstring).

    Async, so that with authentication off it costs no worker-thread hop; the token lookup
    (a database read) runs in a worker thread.
    """
    running = get_running(request)
    ctx = running.context
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
    session = session_token(request)
    token = bearer_token(request) or session
    if token is None:
        raise UnauthenticatedError(
            "authentication required: send Authorization: Bearer <token> (set LOOPML_TOKEN, "
            "or run `loopml login`)"
        )
    key = running.auth_key
    source = client_source(request)
    limiter = limiter_of(request)
    limiter.check(source)
    try:
        caller = await anyio.to_thread.run_sync(service.authenticate, ctx.store, key, token)
    except UnauthenticatedError:
        limiter.fail(source)
        raise
    if session is not None and request.method in _STATE_CHANGING:
        _check_csrf(request, key, session)
    params = request.path_params
    project = params.get(rule.project_param)
    if rule.project_param == MLFLOW_PROJECT:
        project = ctx.settings.mlflow.project
    elif project is None and template.startswith("/deployments/"):
        project = _DEFAULT_PROJECT
    resource = await _resource_name(request, ctx.store, rule, caller, project)
    service.authorize(caller, rule, project, resource)
    request.state.principal = caller


async def _resource_name(
    request: Request, store: MetadataStore, rule: Rule, caller: Principal, project: str | None
) -> str | None:
    """The name of the resource the route acts on, for a caller narrowed to that kind of
    resource; ``None`` for every other caller (``authorize`` does not read it for them)."""
    wanted = rule.resource
    if wanted is None or caller.resource is None:
        return None
    if caller.resource.partition(":")[0] != wanted.kind:
        return None  # refused whatever the name
    if wanted.source is Source.PATH:
        return _text(request.path_params.get(wanted.param))
    if project is None or project != caller.project:
        return None  # authorize answers 404 before it looks at the resource
    if wanted.source is Source.RUN:
        run_id = request.path_params[wanted.param]
        found: str | None = await anyio.to_thread.run_sync(
            service.run_experiment, store, project, run_id
        )
        return found
    return _text(_field(await _json_body(request), wanted.param))


async def _json_body(request: Request) -> Any:
    # The route's body parameter made FastAPI read and decode the body before the
    # dependencies run; ``json()`` returns what it kept (``StrictJSONRequest`` caches it).
    try:
        return await request.json()
    except ValueError:
        return None


def _field(body: Any, name: str) -> Any:
    return body.get(name) if isinstance(body, dict) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _check_csrf(request: Request, key: bytes, session: str) -> None:
    given = request.headers.get(sessions.CSRF_HEADER)
    if not sessions.csrf_matches(key, session, given):
        what = "a wrong" if given else "no"
        raise PermissionDeniedError(
            f"{request.method} with a browser session needs the session's CSRF token, and this "
            f"request has {what} {sessions.CSRF_HEADER} header: send the csrf_token from the "
            f"session's login (or the {sessions.CSRF_COOKIE} cookie) as {sessions.CSRF_HEADER}",
            details={"reason": "csrf_token"},
        )
