"""Cron schedules of pipelines in the metadata DB.

The cron arithmetic is done above the store (``loopml.pipelines._cron``): callers hand in
``next_fire_at``. An engine claims a due tick with ``claim``, a compare-and-set on
``next_fire_at``, so engines sharing one database fire each tick once. Changes append
``schedule.created`` / ``schedule.updated`` / ``schedule.deleted``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loopml.core.automation import Concurrency, Schedule, validate_automation_name
from loopml.core.errors import AlreadyExistsError
from loopml.store import events, firings
from loopml.store._checks import check_actor
from loopml.store._errors import add_unique
from loopml.store._registry import project_row
from loopml.store.firings import find_owner
from loopml.store.orm import PipelineRow, ScheduleRow
from loopml.store.pipelines import get as get_pipeline


def _to_domain(row: ScheduleRow, project: str, pipeline: str) -> Schedule:
    return Schedule(
        id=row.id,
        project=project,
        name=row.name,
        pipeline=pipeline,
        cron=row.cron,
        timezone=row.timezone,
        inputs=row.inputs,
        concurrency=Concurrency(row.concurrency),
        enabled=row.enabled,
        next_fire_at=row.next_fire_at,
        last_fired_at=row.last_fired_at,
        last_run_id=row.last_run_id,
        waiting=row.waiting,
        actor=row.actor,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _row(session: Session, project: str, name: str) -> tuple[ScheduleRow, str]:
    return find_owner(session, ScheduleRow, "schedule", project, name)


def _event(session: Session, type: str, project: str, row: ScheduleRow, actor: str) -> None:
    events.append(
        session,
        type=type,
        subject=row.name,
        project=project,
        payload={"schedule": row.name, "cron": row.cron, "timezone": row.timezone},
        actor=actor,
    )


def create(
    session: Session,
    project: str,
    *,
    name: str,
    pipeline: str,
    cron: str,
    timezone: str,
    inputs: dict[str, Any],
    concurrency: Concurrency,
    enabled: bool,
    next_fire_at: datetime,
    actor: str,
) -> Schedule:
    """Add a schedule (checked cron and zone, its first tick computed by the caller).

    Raises:
        NotFoundError: no such project or pipeline.
        AlreadyExistsError: the project has a schedule of that name.
    """
    validate_automation_name(name, "schedule")
    check_actor(actor)
    target = get_pipeline(session, project, pipeline)
    row = ScheduleRow(
        project_id=project_row(session, project).id,
        name=name,
        pipeline_id=target.id,
        cron=cron,
        timezone=timezone,
        inputs=inputs,
        concurrency=concurrency.value,
        enabled=enabled,
        next_fire_at=next_fire_at,
        waiting=False,
        actor=actor,
    )
    add_unique(
        session,
        row,
        AlreadyExistsError(
            f"schedule {name!r} already exists in project {project!r}: pick another name, "
            "or change it with `loopml schedules` pause/resume or the PATCH route",
            details={"project": project, "schedule": name},
        ),
    )
    _event(session, "schedule.created", project, row, actor)
    return _to_domain(row, project, pipeline)


def get(session: Session, project: str, name: str) -> Schedule:
    """The schedule ``name``; ``NotFoundError`` when it or the project is missing."""
    row, pipeline = _row(session, project, name)
    return _to_domain(row, project, pipeline)


def list_(session: Session, project: str) -> list[Schedule]:
    """A project's schedules, by name."""
    project_id = project_row(session, project).id
    rows = session.execute(
        select(ScheduleRow, PipelineRow.name)
        .join(PipelineRow, PipelineRow.id == ScheduleRow.pipeline_id)
        .where(ScheduleRow.project_id == project_id)
        .order_by(ScheduleRow.name)
    )
    return [_to_domain(row, project, pipeline) for row, pipeline in rows]


def update_(
    session: Session, project: str, name: str, *, changes: dict[str, Any], actor: str
) -> Schedule:
    """Set the given columns (``cron``, ``timezone``, ``inputs``, ``concurrency``,
    ``enabled``, ``next_fire_at``), already checked by the caller; emits
    ``schedule.updated``."""
    check_actor(actor)
    row, pipeline = _row(session, project, name)
    for key, value in changes.items():
        setattr(row, key, value.value if isinstance(value, Concurrency) else value)
    row.actor = actor
    session.flush()
    _event(session, "schedule.updated", project, row, actor)
    return _to_domain(row, project, pipeline)


def delete(session: Session, project: str, name: str, *, actor: str) -> None:
    """Remove a schedule and its firing history (runs it started stay)."""
    check_actor(actor)
    row, _ = _row(session, project, name)
    _event(session, "schedule.deleted", project, row, actor)
    firings.forget(session, row.id)
    session.delete(row)
    session.flush()


def due(session: Session, now: datetime, limit: int = 100) -> list[tuple[str, datetime]]:
    """Enabled schedules whose tick has come: ``(id, next_fire_at)`` each, oldest first."""
    rows = session.execute(
        select(ScheduleRow.id, ScheduleRow.next_fire_at)
        .where(ScheduleRow.enabled.is_(True), ScheduleRow.next_fire_at <= now)
        .order_by(ScheduleRow.next_fire_at, ScheduleRow.id)
        .limit(limit)
    )
    return [(r[0], r[1]) for r in rows if r[1] is not None]


def claim(session: Session, schedule_id: str, old: datetime, new: datetime) -> bool:
    """Move a due schedule's tick from ``old`` to ``new`` if no one did; whether this
    transaction did (the row stays locked until it ends, so the firing is its own)."""
    done = session.execute(
        update(ScheduleRow)
        .where(ScheduleRow.id == schedule_id, ScheduleRow.next_fire_at == old)
        .values(next_fire_at=new)
    )
    return bool(getattr(done, "rowcount", 0) == 1)


def cron_of(session: Session, schedule_id: str) -> tuple[str, str] | None:
    """A schedule's cron expression and zone (``None`` if it was deleted)."""
    found = session.execute(
        select(ScheduleRow.cron, ScheduleRow.timezone).where(ScheduleRow.id == schedule_id)
    ).one_or_none()
    return None if found is None else (found[0], found[1])
