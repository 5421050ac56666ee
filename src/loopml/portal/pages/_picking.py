"""Which project an area page shows: the ``?project=`` asked for, else the first the viewer
sees (``default`` first when it is one of them)."""

from __future__ import annotations

from loopml import projects
from loopml.portal.web import Viewer
from loopml.store import MetadataStore

MAX_PROJECTS = 1000
"""Most projects offered in an area page's project picker."""


def visible_projects(store: MetadataStore, viewer: Viewer) -> list[str]:
    """The projects the viewer sees, by name (blocking)."""
    listed = projects.list_(store, limit=MAX_PROJECTS).items
    return viewer.visible([p.name for p in listed])


def pick(store: MetadataStore, viewer: Viewer, asked: str | None) -> tuple[str | None, list[str]]:
    """The project to show and the viewer's projects; ``asked`` is checked as the API would
    (404 for a project the viewer cannot see)."""
    seen = visible_projects(store, viewer)
    if asked:
        viewer.require(asked)
        projects.get(store, asked)
        return asked, seen
    if "default" in seen:
        return "default", seen
    return (seen[0] if seen else None), seen
