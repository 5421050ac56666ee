"""Projects: create, read, list, update and delete, each recorded as an event.

Every function takes a ``Session`` from ``MetadataStore.session()`` and runs inside its
transaction; the event is written in that same transaction, so a change and its event
commit or vanish together.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.errors import AlreadyExistsError, ConflictError, NotFoundError, ValidationError
from loopml.core.names import DEFAULT_PROJECT, validate_project_name
from loopml.core.types import Page, Project
from loopml.store import events, models
from loopml.store._checks import check_actor, check_limit, check_text
from loopml.store._errors import add_unique
from loopml.store.orm import ProjectRow

MAX_DESCRIPTION = 4000


def _to_domain(row: ProjectRow) -> Project:
    return Project(
        id=row.id,
        name=row.name,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _find(session: Session, name: str) -> ProjectRow | None:
    return session.scalars(select(ProjectRow).where(ProjectRow.name == name)).one_or_none()


def _require(session: Session, name: str) -> ProjectRow:
    validate_project_name(name)
    row = _find(session, name)
    if row is None:
        raise NotFoundError(f"project {name!r} not found", details={"project": name})
    return row


def create(session: Session, name: str, *, description: str = "", actor: str) -> Project:
    """Create a project and append ``project.created``.

    Raises:
        ValidationError: the name, description or actor is invalid.
        AlreadyExistsError: a project with this name exists.
    """
    validate_project_name(name)
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    exists = AlreadyExistsError(f"project {name!r} already exists", details={"project": name})
    if _find(session, name) is not None:
        raise exists
    row = ProjectRow(name=name, description=description)
    add_unique(session, row, exists)
    events.append(session, type="project.created", subject=name, project=name, actor=actor)
    return _to_domain(row)


def get(session: Session, name: str) -> Project:
    """The project called ``name``.

    Raises:
        NotFoundError: there is no such project.
    """
    return _to_domain(_require(session, name))


def list_(session: Session, *, limit: int = 100, cursor: str | None = None) -> Page[Project]:
    """Projects ordered by name, ``limit`` at a time.

    Args:
        limit: page size, 1 to 1000.
        cursor: ``next_cursor`` of the previous page; ``None`` for the first page.

    Raises:
        ValidationError: bad ``limit`` or ``cursor``.
    """
    check_limit(limit)
    query = select(ProjectRow).order_by(ProjectRow.name).limit(limit + 1)
    if cursor is not None:
        try:
            validate_project_name(cursor)
        except ValidationError as exc:
            raise ValidationError(
                f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
                details={"field": "cursor"},
            ) from exc
        query = query.where(ProjectRow.name > cursor)
    rows = list(session.scalars(query))
    items = [_to_domain(row) for row in rows[:limit]]
    next_cursor = items[-1].name if len(rows) > limit else None
    return Page[Project](items=items, next_cursor=next_cursor)


def update(session: Session, name: str, *, description: str, actor: str) -> Project:
    """Change a project's description and append ``project.updated``.

    Raises:
        NotFoundError: there is no such project.
        ValidationError: the description or actor is invalid.
    """
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    row = _require(session, name)
    row.description = description
    session.flush()
    events.append(
        session,
        type="project.updated",
        subject=name,
        project=name,
        payload={"description": description},
        actor=actor,
    )
    return _to_domain(row)


def delete(session: Session, name: str, *, actor: str) -> None:
    """Delete a project and append ``project.deleted``; its past events stay.

    Raises:
        ConflictError: ``name`` is the default project, or other records still use it.
        NotFoundError: there is no such project.
    """
    if name == DEFAULT_PROJECT:
        raise ConflictError(
            "the default project cannot be deleted", details={"project": DEFAULT_PROJECT}
        )
    check_actor(actor)
    row = _require(session, name)
    models.delete_all_in_project(session, row.id)
    session.delete(row)
    session.flush()
    events.append(session, type="project.deleted", subject=name, project=name, actor=actor)
