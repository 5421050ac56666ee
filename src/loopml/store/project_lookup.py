"""A project's row by its name: the lookup every repository of a project's records starts
from; and, for the packages above the store, which get no ORM row, its id (which is also
the check that it exists)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.errors import NotFoundError
from loopml.core.names import validate_project_name
from loopml.store.orm import ProjectRow


def project_row(session: Session, project: str) -> ProjectRow:
    """The project called ``project``; ``NotFoundError`` when absent."""
    validate_project_name(project)
    row = session.scalars(select(ProjectRow).where(ProjectRow.name == project)).one_or_none()
    if row is None:
        raise NotFoundError(f"project {project!r} not found", details={"project": project})
    return row


def project_id(session: Session, project: str) -> str:
    """The id of the project called ``project``; ``NotFoundError`` when absent."""
    return project_row(session, project).id
