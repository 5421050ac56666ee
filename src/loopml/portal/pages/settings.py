"""Settings (``/settings``): the viewer's own API tokens (list, create — the secret shown
once —, revoke); for a platform admin, users (list, create, disable, enable) and any token
by its prefix (look up, revoke); for a project admin, the project's members and their roles
(set, remove).

Each action calls what the API's route for it calls (``loopml.auth.service``), with the
same rule (``loopml.auth.permissions``): own tokens need a user, users and every token a
platform admin, members the admin role in the project. ``create_token`` itself keeps a
token no wider than the session it is made with. With authentication off there are no
users or tokens: the page says how to turn it on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from loopml.auth import service
from loopml.core.auth import DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS, ApiToken, Membership, Role, User
from loopml.core.errors import LoopmlError, PermissionDeniedError, ValidationError
from loopml.faces.context import MetadataStore, get_running
from loopml.portal.pages._picking import visible_projects
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
ROLES = ("viewer", "editor", "admin")


@dataclass
class SettingsView:
    """What the settings page shows this viewer."""

    tokens: list[ApiToken] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    members: dict[str, list[Membership]] = field(default_factory=dict)
    found: ApiToken | None = None
    lookup: str = ""
    lookup_error: str | None = None


def gather(store: MetadataStore, viewer: Viewer, prefix: str | None) -> SettingsView:
    """The viewer's tokens, and what it administers (blocking)."""
    made = SettingsView()
    if viewer.principal is None:
        return made
    made.tokens = service.list_tokens(store, viewer.principal.user)
    made.projects = visible_projects(store, viewer)
    for project in made.projects:
        if viewer.can(project, Role.ADMIN):
            made.members[project] = service.list_members(store, project)
    if viewer.platform_admin:
        made.users = service.list_users(store)
        if prefix:
            made.lookup = prefix
            try:
                made.found = service.find_token(store, prefix)
            except LoopmlError as exc:
                made.lookup_error = exc.message
    return made


async def _page(
    request: Request,
    viewer: Viewer,
    *,
    prefix: str | None = None,
    status_code: int = 200,
    **data: Any,
) -> Response:
    ctx = context_of(request)
    view = await anyio.to_thread.run_sync(lambda: gather(ctx.store, viewer, prefix))
    return render(
        request, "settings.html", viewer, status_code=status_code, page="settings", view=view,
        roles=ROLES, default_days=DEFAULT_TOKEN_DAYS, max_days=MAX_TOKEN_DAYS, **data,
    )  # fmt: skip


@router.get("/settings")
async def settings_page(
    request: Request, viewer: ViewerDep, prefix: str | None = Query(default=None, max_length=11)
) -> Response:
    """The viewer's tokens, and users, members and token lookup for those who manage them."""
    return await _page(request, viewer, prefix=prefix)


def _signed_in(viewer: Viewer) -> None:
    if viewer.principal is None:
        raise ValidationError(
            "authentication is off on this server (auth.enabled = false): there are no "
            "users or tokens to manage"
        )


def _platform(viewer: Viewer) -> None:
    _signed_in(viewer)
    if not viewer.platform_admin:
        raise PermissionDeniedError("this needs a platform admin")


async def _form(request: Request, viewer: Viewer, check: Callable[[Viewer], None]) -> FormData:
    form = await request.form()
    check_form(viewer, form)
    check(viewer)
    return form


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _days(text: str | None) -> int:
    if text is None:
        return DEFAULT_TOKEN_DAYS
    try:
        return int(text)
    except ValueError:
        raise ValidationError(
            f"expires in days must be a whole number from 1 to {MAX_TOKEN_DAYS}",
            details={"field": "expires_in_days"},
        ) from None


@router.post(FORM_PREFIX + "settings/tokens")
async def create_token(request: Request, viewer: ViewerDep) -> Response:
    """Make a token of the viewer (no stronger than its session); the answer shows the
    secret, once. Bad input shows the form again with the reason (4xx)."""
    form = await _form(request, viewer, _signed_in)
    assert viewer.principal is not None
    caller = viewer.principal
    ctx = context_of(request)
    key = get_running(request).auth_key
    name, role = _text(form, "name"), _text(form, "role")
    try:
        if name is None:
            raise ValidationError("a token needs a name", details={"field": "name"})
        days = _days(_text(form, "expires_in_days"))
        made = await anyio.to_thread.run_sync(
            lambda: service.create_token(
                ctx.store, key, caller, name=name, project=_text(form, "project"),
                role=Role.parse(role) if role else None, resource=_text(form, "resource"),
                expires_in_days=days,
            )
        )  # fmt: skip
    except LoopmlError as exc:
        if exc.status >= 500:
            raise
        return await _page(request, viewer, status_code=exc.status, token_error=exc.message)
    response = render(request, "settings_token.html", viewer, page="settings", made=made)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post(FORM_PREFIX + "settings/tokens/{token}/revoke")
async def revoke_token(request: Request, viewer: ViewerDep, token: str) -> Response:
    """Revoke one of the viewer's own tokens (by id)."""
    await _form(request, viewer, _signed_in)
    assert viewer.principal is not None
    user = viewer.principal.user
    ctx = context_of(request)
    await anyio.to_thread.run_sync(
        lambda: service.revoke_token(ctx.store, user, token, actor=viewer.actor)
    )
    return redirect("/settings#tokens-h")


@router.post(FORM_PREFIX + "settings/users")
async def create_user(request: Request, viewer: ViewerDep) -> Response:
    """Add a user (platform admin); a refused name or password shows the form again."""
    form = await _form(request, viewer, _platform)
    ctx = context_of(request)
    name, password = _text(form, "name") or "", str(form.get("password") or "")
    admin = form.get("platform_admin") == "on"
    try:
        await anyio.to_thread.run_sync(
            lambda: service.create_user(
                ctx.store, name, password, platform_admin=admin, actor=viewer.actor
            )
        )
    except LoopmlError as exc:
        if exc.status >= 500:
            raise
        return await _page(request, viewer, status_code=exc.status, user_error=exc.message)
    return redirect("/settings#users-h")


@router.post(FORM_PREFIX + "settings/users/{name}/{action}")
async def disable_user(request: Request, viewer: ViewerDep, name: str, action: str) -> Response:
    """Disable a user (its tokens and sessions revoked) or enable it again (platform admin,
    as ``PATCH /api/v1/users/{user}``); refused for yourself or the last platform admin."""
    await _form(request, viewer, _platform)
    if action not in ("disable", "enable"):
        raise ValidationError("the action is disable or enable", details={"field": "action"})
    ctx = context_of(request)
    caller = viewer.principal.user if viewer.principal else None

    def change() -> User:
        if action == "enable":
            return service.enable_user(ctx.store, name, actor=viewer.actor)
        return service.disable_user(ctx.store, name, caller=caller, actor=viewer.actor)

    try:
        await anyio.to_thread.run_sync(change)
    except LoopmlError as exc:
        if exc.status >= 500:
            raise
        return await _page(request, viewer, status_code=exc.status, user_error=exc.message)
    return redirect("/settings#users-h")


@router.post(FORM_PREFIX + "settings/members/{project}/{user}/remove")
async def remove_member(request: Request, viewer: ViewerDep, project: str, user: str) -> Response:
    """Take a user's role in the project away (project admin, as ``DELETE .../members``)."""
    await _form(request, viewer, _signed_in)
    viewer.require(project, Role.ADMIN)
    ctx = context_of(request)
    try:
        await anyio.to_thread.run_sync(
            lambda: service.remove_member(ctx.store, project, user, actor=viewer.actor)
        )
    except LoopmlError as exc:
        if exc.status >= 500:
            raise
        return await _page(
            request, viewer, status_code=exc.status, member_error=exc.message,
            member_project=project,
        )  # fmt: skip
    return redirect(f"/settings#members-{quote(project, safe='')}")


@router.post(FORM_PREFIX + "settings/members/{project}")
async def set_member(request: Request, viewer: ViewerDep, project: str) -> Response:
    """Give a user a role in the project (project admin)."""
    form = await _form(request, viewer, _signed_in)
    viewer.require(project, Role.ADMIN)
    ctx = context_of(request)
    user, role = _text(form, "user") or "", _text(form, "role") or ""
    try:
        parsed = Role.parse(role)
        await anyio.to_thread.run_sync(
            lambda: service.set_role(ctx.store, project, user, parsed, actor=viewer.actor)
        )
    except LoopmlError as exc:
        if exc.status >= 500:
            raise
        return await _page(
            request, viewer, status_code=exc.status, member_error=exc.message,
            member_project=project,
        )  # fmt: skip
    return redirect(f"/settings#members-{quote(project, safe='')}")


@router.post(FORM_PREFIX + "settings/admin/tokens/{prefix}/revoke")
async def revoke_any_token(request: Request, viewer: ViewerDep, prefix: str) -> Response:
    """Revoke any user's token by its prefix (platform admin)."""
    await _form(request, viewer, _platform)
    ctx = context_of(request)
    await anyio.to_thread.run_sync(
        lambda: service.revoke_any_token(ctx.store, prefix, actor=viewer.actor)
    )
    return redirect(f"/settings?prefix={quote(prefix, safe='')}#lookup-h")
