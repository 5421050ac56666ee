"""Experiments: named groups of runs inside a project.

Every function takes a ``Session`` from ``MetadataStore.session()``; creating one appends
``experiment.created`` in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.errors import AlreadyExistsError, NotFoundError, ValidationError
from loopml.core.mlflow_filter import FilterClause, FilterOrder
from loopml.core.names import validate_project_name
from loopml.core.runs import (
    MAX_TAGS_PER_BATCH,
    TAG_VALUE_MAX,
    Experiment,
    validate_experiment_name,
    validate_key,
)
from loopml.core.types import Page
from loopml.store import events
from loopml.store._checks import check_actor, check_limit, check_text
from loopml.store._errors import add_unique
from loopml.store._like import compare, parse_page_token
from loopml.store.orm import ExperimentRow, ProjectRow

MAX_DESCRIPTION = 4000


def project_id(session: Session, project: str) -> str:
    """The id of the project called ``project``.

    Raises:
        ValidationError: the name is invalid.
        NotFoundError: there is no such project.
    """
    validate_project_name(project)
    found = session.scalar(select(ProjectRow.id).where(ProjectRow.name == project))
    if found is None:
        raise NotFoundError(f"project {project!r} not found", details={"project": project})
    return found


def _to_domain(row: ExperimentRow, project: str) -> Experiment:
    return Experiment(
        id=row.id,
        project=project,
        name=row.name,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
        tags=dict(row.tags or {}),
    )


def _find(session: Session, pid: str, name: str) -> ExperimentRow | None:
    query = select(ExperimentRow).where(ExperimentRow.project_id == pid, ExperimentRow.name == name)
    return session.scalars(query).one_or_none()


def create(
    session: Session, project: str, name: str, *, description: str = "", actor: str
) -> Experiment:
    """Create an experiment and append ``experiment.created``.

    Raises:
        ValidationError: a bad name, description or actor.
        NotFoundError: no such project.
        AlreadyExistsError: the project has an experiment of that name.
    """
    validate_experiment_name(name)
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    pid = project_id(session, project)
    exists = AlreadyExistsError(
        f"experiment {name!r} already exists in project {project!r}",
        details={"project": project, "experiment": name},
    )
    if _find(session, pid, name) is not None:
        raise exists
    row = ExperimentRow(project_id=pid, name=name, description=description)
    add_unique(session, row, exists)
    events.append(session, type="experiment.created", subject=name, project=project, actor=actor)
    return _to_domain(row, project)


def get(session: Session, project: str, name: str) -> Experiment:
    """The experiment ``name`` of ``project``.

    Raises:
        NotFoundError: no such project or experiment.
    """
    validate_experiment_name(name)
    row = _find(session, project_id(session, project), name)
    if row is None:
        raise NotFoundError(
            f"experiment {name!r} not found in project {project!r}",
            details={"project": project, "experiment": name},
        )
    return _to_domain(row, project)


def get_or_create(session: Session, project: str, name: str, *, actor: str) -> Experiment:
    """The experiment ``name``, created first if it does not exist yet."""
    try:
        return get(session, project, name)
    except NotFoundError:
        return create(session, project, name, actor=actor)


def list_(
    session: Session, project: str, *, limit: int = 100, cursor: str | None = None
) -> Page[Experiment]:
    """A project's experiments ordered by name, ``limit`` at a time.

    Raises:
        ValidationError: a bad ``limit`` or ``cursor``.
        NotFoundError: no such project.
    """
    check_limit(limit)
    pid = project_id(session, project)
    query = (
        select(ExperimentRow)
        .where(ExperimentRow.project_id == pid)
        .order_by(ExperimentRow.name)
        .limit(limit + 1)
    )
    if cursor is not None:
        try:
            validate_experiment_name(cursor)
        except ValidationError as exc:
            raise ValidationError(
                f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
                details={"field": "cursor"},
            ) from exc
        query = query.where(ExperimentRow.name > cursor)
    rows = list(session.scalars(query))
    items = [_to_domain(row, project) for row in rows[:limit]]
    next_cursor = items[-1].name if len(rows) > limit else None
    return Page[Experiment](items=items, next_cursor=next_cursor)


def _by_id(session: Session, project: str, experiment_id: str) -> ExperimentRow:
    pid = project_id(session, project)
    row = session.get(ExperimentRow, experiment_id) if len(experiment_id) == 32 else None
    if row is None or row.project_id != pid:
        raise NotFoundError(
            f"experiment with id {experiment_id[:40]!r} not found in project {project!r}",
            details={"project": project, "experiment_id": experiment_id[:40]},
        )
    return row


def get_by_id(session: Session, project: str, experiment_id: str) -> Experiment:
    """The experiment of ``project`` whose id is ``experiment_id``.

    Raises:
        NotFoundError: no such project or experiment.
    """
    return _to_domain(_by_id(session, project, experiment_id), project)


def ids_by_name(session: Session, project: str, names: list[str]) -> dict[str, str]:
    """The ids of the project's experiments called ``names``, in one query."""
    query = select(ExperimentRow.name, ExperimentRow.id).where(
        ExperimentRow.project_id == project_id(session, project), ExperimentRow.name.in_(names)
    )
    return dict(session.execute(query).tuples().all())


def update(
    session: Session,
    project: str,
    experiment_id: str,
    *,
    name: str | None = None,
    deleted: bool | None = None,
    actor: str,
) -> Experiment:
    """Rename an experiment, or soft-delete (``deleted=True``) or restore it.

    Appends ``experiment.renamed``, ``experiment.trashed`` or ``experiment.restored``.

    Raises:
        NotFoundError: no such project or experiment.
        AlreadyExistsError: another experiment of the project has the new name.
    """
    check_actor(actor)
    row = _by_id(session, project, experiment_id)
    if name is not None and name != row.name:
        validate_experiment_name(name)
        if _find(session, row.project_id, name) is not None:
            raise AlreadyExistsError(
                f"experiment {name!r} already exists in project {project!r}",
                details={"project": project, "experiment": name},
            )
        row.name = name
        events.append(
            session, type="experiment.renamed", subject=name, project=project, actor=actor
        )
    if deleted is not None and (row.deleted_at is not None) != deleted:
        row.deleted_at = utcnow() if deleted else None
        kind = "experiment.trashed" if deleted else "experiment.restored"
        events.append(session, type=kind, subject=row.name, project=project, actor=actor)
    session.flush()
    return _to_domain(row, project)


def search(
    session: Session,
    project: str,
    *,
    lifecycle: str = "active",
    clauses: list[FilterClause] | None = None,
    order_by: list[FilterOrder] | None = None,
    limit: int = 100,
    page_token: str | None = None,
) -> Page[Experiment]:
    """A project's experiments matching every clause (``core.mlflow_filter``, MLflow's
    grammar): ``lifecycle`` ``active``, ``deleted`` or ``all``; by name unless ``order_by``
    says otherwise; ``next_cursor`` is the next page's offset token.

    Raises:
        ValidationError: a bad ``limit`` or ``page_token``.
        NotFoundError: no such project.
    """
    check_limit(limit)
    offset = parse_page_token(page_token)
    pid = project_id(session, project)
    query = select(ExperimentRow).where(ExperimentRow.project_id == pid)
    if lifecycle != "all":
        deleted = ExperimentRow.deleted_at.is_not(None)
        query = query.where(deleted if lifecycle == "deleted" else ~deleted)
    for clause in clauses or []:
        query = query.where(_where(clause))
    terms = [_ORDER[o.key].desc() if o.descending else _ORDER[o.key] for o in order_by or []]
    query = query.order_by(*terms, ExperimentRow.name).offset(offset).limit(limit + 1)
    rows = list(session.scalars(query))
    items = [_to_domain(row, project) for row in rows[:limit]]
    next_token = str(offset + limit) if len(rows) > limit else None
    return Page[Experiment](items=items, next_cursor=next_token)


_ORDER: dict[str, Any] = {
    "name": ExperimentRow.name,
    "creation_time": ExperimentRow.created_at,
    "last_update_time": ExperimentRow.updated_at,
}


def _where(clause: FilterClause) -> ColumnElement[bool]:
    if clause.kind == "tag":
        return compare(ExperimentRow.tags[clause.key].as_string(), clause.op, clause.value)
    if clause.key == "name":
        return compare(ExperimentRow.name, clause.op, clause.value)
    millis = clause.value if isinstance(clause.value, int) else 0  # an int: the parser's
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return compare(_ORDER[clause.key], clause.op, moment)


def set_tag(
    session: Session,
    project: str,
    experiment_id: str,
    key: str,
    value: str | None,
    *,
    actor: str,
) -> Experiment:
    """Set an experiment's tag (MLflow's ``set_experiment_tag``), or remove it (``value``
    ``None``); appends ``experiment.tag.set`` or ``experiment.tag.removed``.

    Raises:
        NotFoundError: no such project or experiment (or tag, to remove).
        ValidationError: a bad key or value, or too many tags.
    """
    check_actor(actor)
    validate_key("tag", key)
    row = _by_id(session, project, experiment_id)
    tags = dict(row.tags or {})
    if value is None:
        if tags.pop(key, None) is None:
            raise NotFoundError(
                f"experiment {row.name!r} has no tag {key!r}",
                details={"experiment": row.name, "key": key},
            )
    else:
        check_text("value", value, max_length=TAG_VALUE_MAX, allow_empty=True)
        tags[key] = value
        if len(tags) > MAX_TAGS_PER_BATCH:
            raise ValidationError(
                f"an experiment holds at most {MAX_TAGS_PER_BATCH} tags",
                details={"field": "tags"},
            )
    row.tags = tags
    session.flush()
    kind = "experiment.tag.removed" if value is None else "experiment.tag.set"
    payload = {"experiment_id": row.id, "key": key}
    events.append(
        session, type=kind, subject=row.name, project=project, payload=payload, actor=actor
    )
    return _to_domain(row, project)
