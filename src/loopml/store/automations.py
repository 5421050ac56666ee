"""What schedules and triggers share in the metadata DB: finding one by name, listing,
adding, changing (pause and resume included), deleting, and the events each change appends
(``schedule.created`` / ``trigger.updated`` / ...).

Each of ``store.schedules`` and ``store.triggers`` describes itself once as a ``Kind`` (its
table, its domain model, its event payload) and keeps only what is its own: a schedule's
tick claim, a trigger's event cursor. The firing state and history both share is
``store.firings``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.automation import AutomationKind, Concurrency, validate_automation_name
from loopml.core.errors import AlreadyExistsError, NotFoundError
from loopml.store import events, firings
from loopml.store._checks import check_actor
from loopml.store._errors import add_unique
from loopml.store.orm import PipelineRow, ScheduleRow, TriggerRow
from loopml.store.pipelines import get as get_pipeline
from loopml.store.project_lookup import project_row

Row = TypeVar("Row", ScheduleRow, TriggerRow)
Domain = TypeVar("Domain")


@dataclass(frozen=True)
class Kind(Generic[Row, Domain]):
    """One kind of automation as the store sees it.

    Attributes:
        noun: ``schedule`` or ``trigger`` (messages, events, a firing's kind).
        model: its table.
        to_domain: a row, its project and its pipeline's name, as the domain model.
        payload: what its ``<noun>.created`` / ``.updated`` / ``.deleted`` events carry.
    """

    noun: AutomationKind
    model: type[Row]
    to_domain: Callable[[Row, str, str], Domain]
    payload: Callable[[Row], dict[str, Any]]


def shared_fields(row: ScheduleRow | TriggerRow, project: str, pipeline: str) -> dict[str, Any]:
    """The domain fields every automation has, read from its row."""
    return {
        "id": row.id,
        "project": project,
        "name": row.name,
        "pipeline": pipeline,
        "inputs": row.inputs,
        "concurrency": Concurrency(row.concurrency),
        "enabled": row.enabled,
        "last_fired_at": row.last_fired_at,
        "last_run_id": row.last_run_id,
        "waiting": row.waiting,
        "actor": row.actor,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def find(session: Session, kind: Kind[Row, Any], project: str, name: str) -> tuple[Row, str]:
    """A project's schedule or trigger by name, with its pipeline's name.

    Raises:
        ValidationError: a bad name.
        NotFoundError: no such project, or none of that name in it.
    """
    noun = kind.noun.value
    validate_automation_name(name, noun)
    project_id = project_row(session, project).id
    model = kind.model
    found = session.execute(
        select(model, PipelineRow.name)
        .join(PipelineRow, PipelineRow.id == model.pipeline_id)
        .where(model.project_id == project_id, model.name == name)
    ).one_or_none()
    if found is None:
        raise NotFoundError(
            f"{noun} {name!r} not found in project {project!r}",
            details={"project": project, noun: name},
        )
    return found[0], found[1]


def _event(
    session: Session, kind: Kind[Row, Any], verb: str, project: str, row: Row, actor: str
) -> None:
    events.append(
        session,
        type=f"{kind.noun.value}.{verb}",
        subject=row.name,
        project=project,
        payload=kind.payload(row),
        actor=actor,
    )


def create(
    session: Session,
    kind: Kind[Row, Domain],
    project: str,
    *,
    name: str,
    pipeline: str,
    inputs: dict[str, Any],
    concurrency: Concurrency,
    enabled: bool,
    actor: str,
    taken: str,
    **own: Any,
) -> Domain:
    """Insert a new one with the columns all share and its kind's ``own`` columns, and emit
    ``<noun>.created``; ``taken`` is the message when the name is in use.

    Raises:
        ValidationError: a bad name or actor.
        NotFoundError: no such project or pipeline.
        AlreadyExistsError: the project has one of that name.
    """
    noun = kind.noun.value
    validate_automation_name(name, noun)
    check_actor(actor)
    target = get_pipeline(session, project, pipeline)
    row = kind.model(
        project_id=project_row(session, project).id,
        name=name,
        pipeline_id=target.id,
        inputs=inputs,
        concurrency=concurrency.value,
        enabled=enabled,
        waiting=False,
        actor=actor,
        **own,
    )
    add_unique(session, row, AlreadyExistsError(taken, details={"project": project, noun: name}))
    _event(session, kind, "created", project, row, actor)
    return kind.to_domain(row, project, pipeline)


def get(session: Session, kind: Kind[Row, Domain], project: str, name: str) -> Domain:
    """One by name; ``NotFoundError`` when it or the project is missing."""
    row, pipeline = find(session, kind, project, name)
    return kind.to_domain(row, project, pipeline)


def list_(session: Session, kind: Kind[Row, Domain], project: str) -> list[Domain]:
    """A project's schedules (or triggers), by name."""
    project_id = project_row(session, project).id
    model = kind.model
    rows = session.execute(
        select(model, PipelineRow.name)
        .join(PipelineRow, PipelineRow.id == model.pipeline_id)
        .where(model.project_id == project_id)
        .order_by(model.name)
    )
    return [kind.to_domain(row, project, pipeline) for row, pipeline in rows]


def update_(
    session: Session,
    kind: Kind[Row, Domain],
    project: str,
    name: str,
    *,
    changes: dict[str, Any],
    actor: str,
    on_resume: Callable[[Row], None] | None = None,
) -> Domain:
    """Set the given columns, already checked by the caller, and emit ``<noun>.updated``.
    ``on_resume`` runs first when the change resumes a paused one (``enabled`` to true)."""
    check_actor(actor)
    row, pipeline = find(session, kind, project, name)
    if on_resume is not None and changes.get("enabled") is True and not row.enabled:
        on_resume(row)
    for key, value in changes.items():
        setattr(row, key, value.value if isinstance(value, Concurrency) else value)
    row.actor = actor
    session.flush()
    _event(session, kind, "updated", project, row, actor)
    return kind.to_domain(row, project, pipeline)


def delete(session: Session, kind: Kind[Row, Any], project: str, name: str, *, actor: str) -> None:
    """Remove one and its firing history (the runs it started stay); emits
    ``<noun>.deleted``."""
    check_actor(actor)
    row, _ = find(session, kind, project, name)
    _event(session, kind, "deleted", project, row, actor)
    firings.forget(session, row.id)
    session.delete(row)
    session.flush()
