"""Projects, across the metadata store and the artifact store: the namespace every other
record lives in. Each function takes the stores and opens its own transaction, so the API,
the CLI and the portal call the same code."""

from __future__ import annotations

import logging

from loopml.core import layout
from loopml.core.types import Page, Project
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, projects

# The name these lines were always logged under, when this lived in the API.
log = logging.getLogger("loopml.api")


def artifacts_prefix(project: Project) -> str:
    """Where a project's uploaded artifacts live in the artifact store."""
    return layout.project_artifacts_prefix(project.id)


def create(store: MetadataStore, name: str, *, description: str = "", actor: str) -> Project:
    """Create a project (emits ``project.created``)."""
    with store.session() as session:
        return projects.create(session, name, description=description, actor=actor)


def get(store: MetadataStore, name: str) -> Project:
    """The project named ``name``, or ``NotFoundError``."""
    with store.session() as session:
        return projects.get(session, name)


def list_(store: MetadataStore, *, limit: int = 100, cursor: str | None = None) -> Page[Project]:
    """One page of projects, by name."""
    with store.session() as session:
        return projects.list_(session, limit=limit, cursor=cursor)


def update(store: MetadataStore, name: str, *, description: str, actor: str) -> Project:
    """Change a project's description (emits ``project.updated``)."""
    with store.session() as session:
        return projects.update(session, name, description=description, actor=actor)


def delete(store: MetadataStore, artifacts: ArtifactStore, name: str, *, actor: str) -> None:
    """Delete a project and free its artifacts (emits ``project.deleted``).

    Everything it stored (artifacts, run files) lives under the project's id, not its name,
    so a project created later under the same name never sees them even if freeing the
    storage fails half-way; such leftovers are logged and are garbage to collect, never data
    to serve.
    """
    with store.session() as session:
        project = projects.get(session, name)
        projects.delete(session, name, actor=actor)
    try:
        removed = artifacts.delete_prefix(layout.project_prefix(project.id))
    except Exception:
        log.exception("project %s deleted, but freeing its artifacts failed", name)
    else:
        log.info("project %s deleted with %d artifacts", name, removed)
