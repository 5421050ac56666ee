"""Event and webhook triggers of pipelines in the metadata DB.

A trigger reads the ``events`` table past its ``cursor`` (the last event id it has seen); a
new trigger starts at the newest event, so it never fires on history. An engine advances
the cursor with a compare-and-set (``advance``) in the transaction that starts the runs, so
engines sharing one database handle each event once. A webhook trigger keeps only the
SHA-256 of its secret. Changes append ``trigger.created`` / ``.updated`` / ``.deleted``;
what a trigger shares with a schedule (lookup, list, change, delete) is
``store.automations``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from loopml.core.automation import (
    AutomationKind,
    Concurrency,
    Trigger,
    TriggerOn,
    validate_trigger_id,
)
from loopml.core.errors import NotFoundError
from loopml.core.types import Event
from loopml.store import automations
from loopml.store.automations import Kind
from loopml.store.orm import EventRow, ProjectRow, TriggerRow


def _to_domain(row: TriggerRow, project: str, pipeline: str, secret: str | None = None) -> Trigger:
    return Trigger(
        **automations.shared_fields(row, project, pipeline),
        on=TriggerOn(row.on),
        where=row.where,
        min_rows=row.min_rows,
        rows_pending=row.rows_pending,
        secret=secret,
    )


def _payload(row: TriggerRow) -> dict[str, Any]:
    return {"trigger": row.name, "on": row.on, "where": row.where}


KIND: Kind[TriggerRow, Trigger] = Kind(AutomationKind.TRIGGER, TriggerRow, _to_domain, _payload)


def _newest_event(session: Session) -> int:
    return session.scalar(select(func.max(EventRow.id))) or 0


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
        taken=f"trigger {name!r} already exists in project {project!r}: pick another name",
        on=on.value,
        where=where,
        min_rows=min_rows,
        rows_pending=0,
        cursor=_newest_event(session),
        secret_hash=secret_hash,
    )


def update_(
    session: Session, project: str, name: str, *, changes: dict[str, Any], actor: str
) -> Trigger:
    """Set the given columns (``where``, ``min_rows``, ``inputs``, ``concurrency``,
    ``enabled``), already checked by the caller; emits ``trigger.updated``. Resuming moves
    the cursor to the newest event."""

    def from_now(row: TriggerRow) -> None:
        # Resuming starts from now: events appended while paused are not replayed.
        row.cursor = _newest_event(session)
        row.rows_pending = 0

    return automations.update_(
        session, KIND, project, name, changes=changes, actor=actor, on_resume=from_now
    )


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
