"""Cron schedules of pipelines in the metadata DB.

The cron arithmetic is done above the store (``loopml.pipelines._cron``): callers hand in
``next_fire_at``. An engine claims a due tick with ``claim``, a compare-and-set on
``next_fire_at``, so engines sharing one database fire each tick once. Changes append
``schedule.created`` / ``schedule.updated`` / ``schedule.deleted``; what a schedule shares
with a trigger (lookup, list, change, delete) is ``store.automations``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loopml.core.automation import (
    AutomationKind,
    Concurrency,
    Schedule,
    schedule_taken,
)
from loopml.store import automations
from loopml.store.automations import Kind
from loopml.store.orm import ScheduleRow


def _to_domain(row: ScheduleRow, project: str, pipeline: str) -> Schedule:
    return Schedule(
        **automations.shared_fields(row, project, pipeline),
        cron=row.cron,
        timezone=row.timezone,
        next_fire_at=row.next_fire_at,
    )


def _payload(row: ScheduleRow) -> dict[str, Any]:
    return {"schedule": row.name, "cron": row.cron, "timezone": row.timezone}


KIND: Kind[ScheduleRow, Schedule] = Kind(AutomationKind.SCHEDULE, ScheduleRow, _to_domain, _payload)


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
    taken = schedule_taken(project, name)
    return automations.create(
        session,
        KIND,
        project,
        name=name,
        pipeline=pipeline,
        inputs=inputs,
        concurrency=concurrency,
        enabled=enabled,
        actor=actor,
        taken=taken,
        cron=cron,
        timezone=timezone,
        next_fire_at=next_fire_at,
    )


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
