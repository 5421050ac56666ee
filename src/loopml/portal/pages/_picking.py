"""Which project an area page (Runs, Data, Pipelines, Models) shows: the ``?project=`` asked
for, else the project last chosen in this browser (remembered in a cookie whenever a page is
asked for one), else ``default`` when the viewer sees it, else the first the viewer sees.
Models alone may also show every project (``?project=`` empty), which forgets the choice."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from loopml import projects
from loopml.core.names import PROJECT_NAME_PATTERN
from loopml.faces.context import MetadataStore
from loopml.portal.viewer import Viewer

MAX_PROJECTS = 1000
"""Most projects offered in an area page's project picker."""
PROJECT_COOKIE = "loopml_project"
"""The project last chosen in a picker (a name, not a secret)."""
REMEMBER_S = 365 * 86_400


def visible_projects(store: MetadataStore, viewer: Viewer) -> list[str]:
    """The projects the viewer sees, by name (blocking)."""
    listed = projects.list_(store, limit=MAX_PROJECTS).items
    return viewer.visible([p.name for p in listed])


def remembered(request: Request) -> str | None:
    """The project last chosen in this browser, if the cookie holds a project name."""
    value = request.cookies.get(PROJECT_COOKIE, "")
    return value if PROJECT_NAME_PATTERN.fullmatch(value) else None


def remember(response: Response, asked: str | None) -> Response:
    """Keep ``asked`` as the current project of the pages that follow (nothing when none
    was asked; ``""``, every project, forgets it)."""
    if asked:
        response.set_cookie(
            PROJECT_COOKIE, asked, max_age=REMEMBER_S, path="/", httponly=True, samesite="lax"
        )
    elif asked == "":
        response.delete_cookie(PROJECT_COOKIE, path="/")
    return response


def pick(
    store: MetadataStore, viewer: Viewer, asked: str | None, last: str | None = None
) -> tuple[str | None, list[str]]:
    """The project to show and the viewer's projects; ``asked`` is checked as the API would
    (404 for a project the viewer cannot see); ``last`` (the remembered one) is used only
    while the viewer still sees it."""
    seen = visible_projects(store, viewer)
    if asked:
        viewer.require(asked)
        projects.get(store, asked)
        return asked, seen
    if last in seen:
        return last, seen
    if "default" in seen:
        return "default", seen
    return (seen[0] if seen else None), seen
