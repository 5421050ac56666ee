"""What every portal page shares: who is looking (``Viewer``), the templates, the form's
CSRF check, and errors shown as a page instead of the API's JSON body.

A page reads the browser session (``loopml.auth.sessions``) with the same token check as the
API; with authentication on, a visitor without a valid session is sent to ``/login``. Each
page then checks the viewer's role in the project it shows, exactly as the API's rule for the
same data would (``Role`` per project; a platform admin sees everything). With
authentication off the viewer is the local operator and may do everything, as with the API.

Forms post to ``/portal/...`` with a hidden ``csrf_token``: the HMAC of the session's token
under the install's secret (of ``anonymous`` with authentication off), which a page on
another origin cannot read. The cross-site guard also refuses those posts from any other
``Origin`` (``loopml.platform.csrf``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from loopml._version import __version__
from loopml.auth import service, sessions
from loopml.core.auth import Principal, Role
from loopml.core.drift import LEGEND, drifts_when, figure
from loopml.core.errors import (
    LoopmlError,
    NotFoundError,
    PermissionDeniedError,
    WroteWhileReadingError,
)
from loopml.deploy import DeploymentControl
from loopml.faces.authz import client_source, limiter_of
from loopml.faces.context import AppContext, get_running
from loopml.faces.routes import DeclaredRoute
from loopml.portal.reference import inline_code

HERE = Path(__file__).parent
FORM_PREFIX = "/portal/"
"""Where every portal form posts (the cross-site guard lets these through from this origin)."""
_ANONYMOUS = "anonymous"

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["version"] = __version__
templates.env.globals["drifts_when"] = drifts_when
templates.env.globals["drift_figure"] = figure
templates.env.globals["drift_legend"] = LEGEND[0].upper() + LEGEND[1:]
templates.env.filters["inline_code"] = inline_code


def who(actor: str | None) -> str:
    """An event's actor as a person reads it: ``user:walker/token:eb51...`` is ``walker``
    (the page keeps the whole actor in the element's title); ``monitor``, ``gateway`` and
    the other system actors as they are."""
    if not actor:
        return ""
    user = actor.split("/token:", 1)[0]
    return user.removeprefix("user:") or actor


templates.env.globals["who"] = who


_T = TypeVar("_T")


def is_form_path(path: str) -> bool:
    """Whether ``path`` is one of the portal's form endpoints (they check their own CSRF
    field)."""
    return path.startswith(FORM_PREFIX)


class LoginRequired(Exception):
    """The visitor has no valid session; the page sends it to the login form."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page.

    Attributes:
        principal: the logged-in caller; ``None`` with authentication off.
        csrf: the token this viewer's forms carry.
        auth: whether authentication is on.
    """

    principal: Principal | None
    csrf: str
    auth: bool

    @property
    def name(self) -> str:
        """The user's name, or ``local`` with authentication off."""
        return self.principal.user if self.principal else "local"

    @property
    def actor(self) -> str:
        """How events record this viewer's changes (as the API would)."""
        return self.principal.actor if self.principal else _ANONYMOUS

    @property
    def platform_admin(self) -> bool:
        """Whether users, projects and every token are this viewer's to manage."""
        return self.principal is None or self.principal.platform_admin

    @property
    def editor_somewhere(self) -> bool:
        """Whether the viewer may change something in some project (the deploy link)."""
        if self.principal is None or self.principal.platform_admin:
            return True
        return any(role >= Role.EDITOR for role in self.principal.roles.values())

    def role(self, project: str) -> Role | None:
        """The viewer's role in ``project``, ``None`` when it cannot see it."""
        if self.principal is None or self.principal.platform_admin:
            return Role.ADMIN
        found = self.principal.roles.get(project)
        return None if found is None else Role(found)

    def can(self, project: str, needed: Role = Role.VIEWER) -> bool:
        """Whether the viewer holds at least ``needed`` in ``project``."""
        role = self.role(project)
        return role is not None and role >= needed

    def require(self, project: str, needed: Role = Role.VIEWER) -> None:
        """Raise as the API would: 404 for a project the viewer cannot see, 403 for a role
        too low."""
        role = self.role(project)
        if role is None:
            raise NotFoundError(f"project {project!r} not found", details={"project": project})
        if role < needed:
            raise PermissionDeniedError(
                f"this needs the {needed.label} role in project {project!r}; you have {role.label}"
            )

    def visible(self, projects: list[str]) -> list[str]:
        """The projects of ``projects`` the viewer may see."""
        return [p for p in projects if self.can(p)]


def context_of(request: Request) -> AppContext:
    """The app's backends."""
    return get_running(request).context


async def read_only(request: Request, gather: Callable[[], _T]) -> _T:
    """Run a page's blocking reads in a worker thread, in read-only transactions: on
    SQLite they read beside the platform's writers instead of queueing for the write lock
    behind each of them (``MetadataStore.reading``)."""
    store = context_of(request).store

    def run() -> _T:
        try:
            with store.reading():
                return gather()
        except WroteWhileReadingError:
            # A read that builds something on first use (a version's reference profile,
            # made when the page first shows its drift) writes once: read again with the
            # write lock rather than answer 500.
            return gather()

    return await anyio.to_thread.run_sync(run)


def control_of(request: Request) -> DeploymentControl:
    """The app's deployment control plane."""
    return get_running(request).serving.control


async def current_viewer(request: Request) -> Viewer:
    """The page's viewer (a dependency); raises ``LoginRequired`` with authentication on and
    no valid session."""
    ctx = context_of(request)
    key = get_running(request).auth_key
    if not ctx.settings.auth.enabled:
        return Viewer(None, sessions.csrf_token(key, _ANONYMOUS), auth=False)
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if not token:
        raise LoginRequired
    source = client_source(request)
    limiter = limiter_of(request)
    limiter.check(source)
    try:
        principal = await anyio.to_thread.run_sync(service.authenticate, ctx.store, key, token)
    except LoopmlError:
        limiter.fail(source)
        raise LoginRequired from None
    return Viewer(principal, sessions.csrf_token(key, token), auth=True)


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def check_form(viewer: Viewer, form: Mapping[str, Any]) -> None:
    """Refuse a form post without this viewer's CSRF token (403)."""
    given = form.get("csrf_token")
    if not isinstance(given, str) or not hmac.compare_digest(
        viewer.csrf.encode(), given.strip().encode("utf-8", "replace")
    ):
        raise PermissionDeniedError(
            "this form is missing its CSRF token, or it is stale: reload the page and send it again"
        )


def render(
    request: Request, template: str, viewer: Viewer | None, status_code: int = 200, **data: Any
) -> HTMLResponse:
    """A page from ``templates/``; every template gets the viewer and the request."""
    return templates.TemplateResponse(
        request, template, {"viewer": viewer, **data}, status_code=status_code
    )


def redirect(url: str) -> RedirectResponse:
    """Go to ``url`` after a form post (303: the browser then GETs it)."""
    return RedirectResponse(url, status_code=303)


def login_redirect(request: Request) -> RedirectResponse:
    """To the login form, coming back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


class PageRoute(DeclaredRoute):
    """A portal route: an error is a page with the same status and message as the API's
    error, a missing session is a redirect to the login form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return login_redirect(request)
            except LoopmlError as exc:
                return render(
                    request,
                    "error.html",
                    None,
                    status_code=exc.status,
                    error=exc,
                )

        return page
