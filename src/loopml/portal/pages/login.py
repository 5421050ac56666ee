"""Logging in and out: ``/login`` and its form, which starts the same browser session as
``POST /api/v1/auth/session`` (``loopml.auth.sessions``)."""

from __future__ import annotations

from datetime import timedelta

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from loopml.auth import service, sessions
from loopml.core.errors import UnauthenticatedError
from loopml.faces.authz import clear_session_cookies, password_login, set_session_cookies
from loopml.faces.context import get_running
from loopml.portal.viewer import (
    FORM_PREFIX,
    PageRoute,
    Viewer,
    ViewerDep,
    check_form,
    context_of,
    redirect,
    render,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)
_VISITOR = "anonymous"


def safe_next(target: object) -> str:
    """Where to go after logging in: a path on this server only (never another site)."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return "/"
    return "/" if "\\" in target or len(target) > 2000 else target


def _visitor(request: Request) -> Viewer:
    key = get_running(request).auth_key
    return Viewer(None, sessions.csrf_token(key, _VISITOR), auth=True)


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    """The login form (straight to the overview with authentication off)."""
    if not context_of(request).settings.auth.enabled:
        return redirect(safe_next(next))
    return render(request, "login.html", _visitor(request), next=safe_next(next), error=None)


@router.post(FORM_PREFIX + "login")
async def login(request: Request) -> Response:
    """Check the password and start a session; the form again, with the reason, otherwise."""
    ctx = context_of(request)
    form = await request.form()
    visitor = _visitor(request)
    check_form(visitor, form)
    target = safe_next(form.get("next"))
    if not ctx.settings.auth.enabled:
        return redirect(target)
    user, password = str(form.get("user") or ""), str(form.get("password") or "")
    lifetime = timedelta(hours=ctx.settings.auth.session_hours)
    try:
        made = await anyio.to_thread.run_sync(
            lambda: password_login(
                request, ctx.store, user, password, lifetime=lifetime, name="session"
            )
        )
    except UnauthenticatedError as exc:
        return render(
            request, "login.html", visitor, status_code=401, next=target, error=exc.message,
            user=user,
        )  # fmt: skip
    assert made.token is not None  # a token just made carries its secret
    answer = redirect(target)
    set_session_cookies(answer, request, made.token, int(lifetime.total_seconds()))
    return answer


@router.post(FORM_PREFIX + "logout")
async def logout(request: Request, viewer: ViewerDep) -> Response:
    """End the session: its token is revoked and the cookies cleared."""
    check_form(viewer, await request.form())
    ctx = context_of(request)
    if viewer.principal is not None and viewer.principal.token_id is not None:
        principal = viewer.principal
        await anyio.to_thread.run_sync(
            lambda: service.revoke_token(
                ctx.store, principal.user, str(principal.token_id), actor=viewer.actor
            )
        )
    answer = redirect("/login")
    clear_session_cookies(answer, request)
    return answer
