"""Projects, across the metadata store and the artifact store."""

from __future__ import annotations

import logging

from loopml.api.context import AppContext
from loopml.core import layout
from loopml.core.types import Page, Project
from loopml.store import projects

log = logging.getLogger("loopml.api")


def project_prefix(project: Project) -> str:
    """Where a project's uploaded artifacts live in the store."""
    return layout.project_artifacts_prefix(project.id)


def create(ctx: AppContext, name: str, description: str, actor: str) -> Project:
    """Create a project (emits ``project.created``)."""
    with ctx.store.session() as session:
        return projects.create(session, name, description=description, actor=actor)


def get(ctx: AppContext, name: str) -> Project:
    """The project named ``name``, or ``NotFoundError``."""
    with ctx.store.session() as session:
        return projects.get(session, name)


def list_(ctx: AppContext, limit: int, cursor: str | None) -> Page[Project]:
    """One page of projects, by name."""
    with ctx.store.session() as session:
        return projects.list_(session, limit=limit, cursor=cursor)


def update(ctx: AppContext, name: str, description: str, actor: str) -> Project:
    """Change a project's description (emits ``project.updated``)."""
    with ctx.store.session() as session:
        return projects.update(session, name, description=description, actor=actor)


def delete(ctx: AppContext, name: str, actor: str) -> None:
    """Delete a project and free its artifacts (emits ``project.deleted``).

    Everything it stored (artifacts, run files) lives under the project's id, not its name,
    so a project created later under the same name never sees them even if freeing the
    storage fails half-way; such leftovers are logged and are garbage to collect, never data
    to serve.
    """
    with ctx.store.session() as session:
        project = projects.get(session, name)
        projects.delete(session, name, actor=actor)
    try:
        removed = ctx.artifacts.delete_prefix(layout.project_prefix(project.id))
    except Exception:
        log.exception("project %s deleted, but freeing its artifacts failed", name)
    else:
        log.info("project %s deleted with %d artifacts", name, removed)
