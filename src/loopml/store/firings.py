"""What schedules and triggers share in the store: the owner's state a firing reads and
changes (its last run, whether a run waits), and the history of firings.

The firing logic itself (skip or queue, start the run) is ``loopml.pipelines.automation``;
it calls these inside one transaction with the claim that made the firing its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from loopml.core.automation import Concurrency, Firing, FiringOutcome
from loopml.core.pipelines import RunStatus
from loopml.store._checks import check_limit
from loopml.store.orm import (
    FiringRow,
    PipelineRow,
    PipelineRunRow,
    ProjectRow,
    ScheduleRow,
    TriggerRow,
)

_ROWS: dict[str, type[ScheduleRow] | type[TriggerRow]] = {
    "schedule": ScheduleRow,
    "trigger": TriggerRow,
}
MAX_REASON = 500


@dataclass(frozen=True)
class Owner:
    """A schedule or trigger as a firing sees it, read after its row was claimed."""

    kind: str
    id: str
    project: str
    project_id: str
    name: str
    pipeline: str
    inputs: dict[str, Any]
    concurrency: Concurrency
    enabled: bool
    last_run_id: str | None
    waiting: bool
    waiting_event_id: int | None = None


def owner(session: Session, kind: str, owner_id: str, *, lock: bool = False) -> Owner | None:
    """The schedule or trigger ``owner_id`` (``kind`` says which), fresh from the database."""
    model = _ROWS[kind]
    query = (
        select(model, ProjectRow.name, PipelineRow.name)
        .join(ProjectRow, ProjectRow.id == model.project_id)
        .join(PipelineRow, PipelineRow.id == model.pipeline_id)
        .where(model.id == owner_id)
        .execution_options(populate_existing=True)
    )
    if lock:
        query = query.with_for_update(of=model)
    found = session.execute(query).one_or_none()
    if found is None:
        return None
    row, project, pipeline = found
    return Owner(
        kind=kind,
        id=row.id,
        project=project,
        project_id=row.project_id,
        name=row.name,
        pipeline=pipeline,
        inputs=dict(row.inputs),
        concurrency=Concurrency(row.concurrency),
        enabled=row.enabled,
        last_run_id=row.last_run_id,
        waiting=row.waiting,
        waiting_event_id=getattr(row, "waiting_event_id", None),
    )


def run_active(session: Session, run_id: str | None) -> bool:
    """Whether the run ``run_id`` is still queued, running or being cancelled."""
    if run_id is None:
        return False
    status = session.scalar(select(PipelineRunRow.status).where(PipelineRunRow.id == run_id))
    return status is not None and not RunStatus(status).finished


def mark(session: Session, kind: str, owner_id: str, **values: Any) -> None:
    """Set the owner's firing state (``last_fired_at``, ``last_run_id``, ``waiting``...)."""
    model = _ROWS[kind]
    session.execute(update(model).where(model.id == owner_id).values(**values))


def claim_waiting(session: Session, kind: str, owner_id: str) -> bool:
    """Take the run that waits for this owner (``waiting`` true → false); whether this
    transaction took it (another engine may have)."""
    model = _ROWS[kind]
    done = session.execute(
        update(model).where(model.id == owner_id, model.waiting.is_(True)).values(waiting=False)
    )
    return bool(getattr(done, "rowcount", 0) == 1)


def waiting(session: Session, kind: str, limit: int = 100) -> list[tuple[str, str | None]]:
    """Owners with a waiting run: ``(id, last_run_id)`` each."""
    model = _ROWS[kind]
    rows = session.execute(
        select(model.id, model.last_run_id)
        .where(model.waiting.is_(True), model.enabled.is_(True))
        .order_by(model.id)
        .limit(limit)
    )
    return [(r[0], r[1]) for r in rows]


def _firing(row: FiringRow) -> Firing:
    return Firing(
        id=row.id,
        kind=row.kind,
        name=row.name,
        time=row.created_at,
        outcome=FiringOutcome(row.outcome),
        run_id=row.run_id,
        reason=row.reason,
        event_id=row.event_id,
        payload=row.payload,
    )


def record(
    session: Session,
    who: Owner,
    *,
    at: datetime,
    outcome: FiringOutcome,
    run_id: str | None = None,
    reason: str | None = None,
    event_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> Firing:
    """Add one firing to the owner's history."""
    row = FiringRow(
        project_id=who.project_id,
        kind=who.kind,
        owner_id=who.id,
        name=who.name,
        outcome=outcome.value,
        run_id=run_id,
        reason=None if reason is None else reason[:MAX_REASON],
        event_id=event_id,
        payload=payload,
        created_at=at,
    )
    session.add(row)
    session.flush()
    return _firing(row)


def history(session: Session, owner_id: str, limit: int = 50) -> list[Firing]:
    """An owner's firings, newest first."""
    check_limit(limit)
    rows = session.scalars(
        select(FiringRow)
        .where(FiringRow.owner_id == owner_id)
        .order_by(FiringRow.created_at.desc(), FiringRow.id.desc())
        .limit(limit)
    )
    return [_firing(row) for row in rows]


def forget(session: Session, owner_id: str) -> None:
    """Drop an owner's history (when it is deleted)."""
    session.execute(delete(FiringRow).where(FiringRow.owner_id == owner_id))
