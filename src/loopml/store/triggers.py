"""Event and webhook triggers of pipelines in the metadata DB.

A trigger reads the ``events`` table past its ``cursor`` (the last event id it has seen); a
new trigger starts at the newest event, so it never fires on history. An engine advances
the cursor with a compare-and-set (``advance``) in the transaction that starts the runs, so
engines sharing one database handle each event once. A webhook trigger keeps only the
SHA-256 of its secret. Changes append ``trigger.created`` / ``.updated`` / ``.deleted``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from loopml.core.automation import (
    Concurrency,
    Trigger,
    TriggerOn,
    validate_automation_name,
    validate_trigger_id,
)
from loopml.core.errors import AlreadyExistsError, NotFoundError
from loopml.core.types import Event
from loopml.store import events, firings
from loopml.store._checks import check_actor
from loopml.store._errors import add_unique
from loopml.store._registry import project_row
from loopml.store.firings import find_owner
from loopml.store.orm import EventRow, PipelineRow, ProjectRow, TriggerRow
from loopml.store.pipelines import get as get_pipeline


def _to_domain(row: TriggerRow, project: str, pipeline: str, secret: str | None = None) -> Trigger:
    return Trigger(
        id=row.id,
        project=project,
        name=row.name,
        pipeline=pipeline,
        on=TriggerOn(row.on),
        where=row.where,
        min_rows=row.min_rows,
        rows_pending=row.rows_pending,
        inputs=row.inputs,
        concurrency=Concurrency(row.concurrency),
        enabled=row.enabled,
        last_fired_at=row.last_fired_at,
        last_run_id=row.last_run_id,
        waiting=row.waiting,
        secret=secret,
        actor=row.actor,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _row(session: Session, project: str, name: str) -> tuple[TriggerRow, str]:
    return find_owner(session, TriggerRow, "trigger", project, name)


def _event(session: Session, type: str, project: str, row: TriggerRow, actor: str) -> None:
    events.append(
        session,
        type=type,
        subject=row.name,
        project=project,
        payload={"trigger": row.name, "on": row.on, "where": row.where},
        actor=actor,
    )


def create(
    session: Session,
    project: str,
    *,
    name: str,
    pipeline: str,
    on: TriggerOn,
    where: dict[str, str],
    min_rows: int | None,
    inputs: dict[str, Any],
    concurrency: Concurrency,
    enabled: bool,
    secret_hash: str | None,
    actor: str,
) -> Trigger:
    """Add a trigger (checked by the caller); it reads events appended from now on.

    Raises:
        NotFoundError: no such project or pipeline.
        AlreadyExistsError: the project has a trigger of that name.
    """
    validate_automation_name(name, "trigger")
    check_actor(actor)
    target = get_pipeline(session, project, pipeline)
    row = TriggerRow(
        project_id=project_row(session, project).id,
        name=name,
        pipeline_id=target.id,
        on=on.value,
        where=where,
        min_rows=min_rows,
        rows_pending=0,
        cursor=session.scalar(select(func.max(EventRow.id))) or 0,
        secret_hash=secret_hash,
        inputs=inputs,
        concurrency=concurrency.value,
        enabled=enabled,
        waiting=False,
        actor=actor,
    )
    add_unique(
        session,
        row,
        AlreadyExistsError(
            f"trigger {name!r} already exists in project {project!r}: pick another name",
            details={"project": project, "trigger": name},
        ),
    )
    _event(session, "trigger.created", project, row, actor)
    return _to_domain(row, project, pipeline)


def get(session: Session, project: str, name: str) -> Trigger:
    """The trigger ``name``; ``NotFoundError`` when it or the project is missing."""
    row, pipeline = _row(session, project, name)
    return _to_domain(row, project, pipeline)


def list_(session: Session, project: str) -> list[Trigger]:
    """A project's triggers, by name."""
    project_id = project_row(session, project).id
    rows = session.execute(
        select(TriggerRow, PipelineRow.name)
        .join(PipelineRow, PipelineRow.id == TriggerRow.pipeline_id)
        .where(TriggerRow.project_id == project_id)
        .order_by(TriggerRow.name)
    )
    return [_to_domain(row, project, pipeline) for row, pipeline in rows]


def update_(
    session: Session, project: str, name: str, *, changes: dict[str, Any], actor: str
) -> Trigger:
    """Set the given columns (``where``, ``min_rows``, ``inputs``, ``concurrency``,
    ``enabled``), already checked by the caller; emits ``trigger.updated``. Resuming moves
    the cursor to the newest event."""
    check_actor(actor)
    row, pipeline = _row(session, project, name)
    if changes.get("enabled") is True and not row.enabled:
        # Resuming starts from now: events appended while paused are not replayed.
        row.cursor = session.scalar(select(func.max(EventRow.id))) or 0
        row.rows_pending = 0
    for key, value in changes.items():
        setattr(row, key, value.value if isinstance(value, Concurrency) else value)
    row.actor = actor
    session.flush()
    _event(session, "trigger.updated", project, row, actor)
    return _to_domain(row, project, pipeline)


def delete(session: Session, project: str, name: str, *, actor: str) -> None:
    """Remove a trigger and its firing history (runs it started stay)."""
    check_actor(actor)
    row, _ = _row(session, project, name)
    _event(session, "trigger.deleted", project, row, actor)
    firings.forget(session, row.id)
    session.delete(row)
    session.flush()


def by_id(session: Session, trigger_id: str) -> tuple[str, str | None, str]:
    """A trigger's ``on``, secret hash and name, locked until the transaction ends.

    Raises:
        NotFoundError: no trigger has this id.
    """
    validate_trigger_id(trigger_id)
    found = session.execute(
        select(TriggerRow.on, TriggerRow.secret_hash, TriggerRow.name)
        .where(TriggerRow.id == trigger_id)
        .with_for_update()
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"trigger {trigger_id} not found", details={"trigger": trigger_id})
    return found[0], found[1], found[2]


def watching(session: Session) -> list[tuple[str, str, int]]:
    """Enabled event triggers: ``(id, on, cursor)`` each."""
    rows = session.execute(
        select(TriggerRow.id, TriggerRow.on, TriggerRow.cursor)
        .where(TriggerRow.enabled.is_(True), TriggerRow.on != TriggerOn.WEBHOOK.value)
        .order_by(TriggerRow.id)
    )
    return [(r[0], r[1], r[2]) for r in rows]


def new_events(
    session: Session, trigger_id: str, on: str, cursor: int, limit: int = 200
) -> list[Event]:
    """Events of type ``on`` in the trigger's project past ``cursor``, oldest first."""
    project = session.scalar(
        select(ProjectRow.name)
        .join(TriggerRow, TriggerRow.project_id == ProjectRow.id)
        .where(TriggerRow.id == trigger_id)
    )
    if project is None:
        return []
    rows = session.scalars(
        select(EventRow)
        .where(EventRow.id > cursor, EventRow.type == on, EventRow.project == project)
        .order_by(EventRow.id)
        .limit(limit)
    )
    return [
        Event(
            id=r.id,
            time=r.time,
            project=r.project,
            type=r.type,
            subject=r.subject,
            payload=r.payload,
            actor=r.actor,
        )
        for r in rows
    ]


def rows_pending(session: Session, trigger_id: str) -> tuple[int, int | None, dict[str, Any]]:
    """A trigger's rows appended since it last fired, its ``min_rows`` and ``where``."""
    found = session.execute(
        select(TriggerRow.rows_pending, TriggerRow.min_rows, TriggerRow.where).where(
            TriggerRow.id == trigger_id
        )
    ).one()
    return found[0], found[1], dict(found[2])


def advance(session: Session, trigger_id: str, old: int, new: int, *, rows_pending: int) -> bool:
    """Move the trigger's cursor from ``old`` to ``new`` if no one did; whether this
    transaction did (the row stays locked until it ends)."""
    done = session.execute(
        update(TriggerRow)
        .where(TriggerRow.id == trigger_id, TriggerRow.cursor == old)
        .values(cursor=new, rows_pending=rows_pending)
    )
    return bool(getattr(done, "rowcount", 0) == 1)
