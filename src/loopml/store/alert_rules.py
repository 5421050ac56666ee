"""Alert rules and their webhook deliveries (data access only; the state machine is
``loopml.core.alerts``). Rows leave as plain dicts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loopml.core.errors import AlreadyExistsError, NotFoundError
from loopml.store import events
from loopml.store.orm import AlertDeliveryRow, AlertRuleRow, ProjectRow
from loopml.store.project_lookup import project_row

_RULE_FIELDS = (
    "id",
    "name",
    "deployment",
    "metric",
    "comparator",
    "threshold",
    "clear_threshold",
    "for_s",
    "window",
    "severity",
    "webhook",
    "enabled",
    "silenced_until",
    "state",
    "state_since",
    "last_value",
    "created_at",
    "updated_at",
)


def _rule(row: AlertRuleRow, project: str) -> dict[str, Any]:
    return {"project": project, **{f: getattr(row, f) for f in _RULE_FIELDS}}


def _row(session: Session, project: str, name: str) -> AlertRuleRow:
    proj = project_row(session, project)
    row = session.scalars(
        select(AlertRuleRow).where(AlertRuleRow.project_id == proj.id, AlertRuleRow.name == name)
    ).one_or_none()
    if row is None:
        raise NotFoundError(
            f"alert rule {name!r} not found in project {project!r}",
            details={"project": project, "rule": name},
        )
    return row


def create(session: Session, project: str, spec: dict[str, Any], *, actor: str) -> dict[str, Any]:
    """Add a rule (state ``ok``) and append ``alert.rule.created``.

    Raises:
        AlreadyExistsError: the project has a rule of that name.
    """
    proj = project_row(session, project)
    row = AlertRuleRow(project_id=proj.id, enabled=True, state="ok", actor=actor, **spec)
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise AlreadyExistsError(
            f"alert rule {spec['name']!r} already exists in project {project!r}",
            details={"rule": spec["name"]},
        ) from exc
    events.append(
        session,
        type="alert.rule.created",
        subject=row.name,
        project=project,
        payload={"deployment": row.deployment, "metric": row.metric},
        actor=actor,
    )
    return _rule(row, project)


def get(session: Session, project: str, name: str) -> dict[str, Any]:
    """One rule."""
    return _rule(_row(session, project, name), project)


def list_(session: Session, project: str, deployment: str | None = None) -> list[dict[str, Any]]:
    """A project's rules (of one deployment), by name."""
    proj = project_row(session, project)
    query = select(AlertRuleRow).where(AlertRuleRow.project_id == proj.id)
    if deployment is not None:
        query = query.where(AlertRuleRow.deployment == deployment)
    return [_rule(row, project) for row in session.scalars(query.order_by(AlertRuleRow.name))]


def firing_in(session: Session, projects: Sequence[str]) -> list[dict[str, Any]]:
    """The rules firing now in any of ``projects``, by project and name (one query)."""
    query = (
        select(AlertRuleRow, ProjectRow.name)
        .join(ProjectRow, ProjectRow.id == AlertRuleRow.project_id)
        .where(ProjectRow.name.in_(list(projects)), AlertRuleRow.state == "firing")
        .order_by(ProjectRow.name, AlertRuleRow.name)
    )
    return [_rule(row, project) for row, project in session.execute(query).tuples()]


def delete(session: Session, project: str, name: str, *, actor: str) -> None:
    """Remove a rule (its deliveries go with it) and append ``alert.rule.deleted``."""
    row = _row(session, project, name)
    session.delete(row)
    events.append(
        session, type="alert.rule.deleted", subject=name, project=project, payload={}, actor=actor
    )


def silence(
    session: Session, project: str, name: str, until: datetime | None, *, actor: str
) -> dict[str, Any]:
    """Stop (or, with ``None``, resume) a rule's notifications until ``until``."""
    row = _row(session, project, name)
    row.silenced_until = until
    session.flush()
    events.append(
        session,
        type="alert.rule.silenced",
        subject=name,
        project=project,
        payload={"until": until.isoformat() if until else None},
        actor=actor,
    )
    return _rule(row, project)


def set_state(
    session: Session,
    project: str,
    name: str,
    *,
    state: str,
    since: datetime | None,
    value: float | None,
) -> None:
    """Record a rule's state after an evaluation."""
    row = _row(session, project, name)
    row.state, row.state_since, row.last_value = state, since, value
    session.flush()


def add_delivery(
    session: Session,
    project: str,
    name: str,
    *,
    url: str,
    event: str,
    outcome: str,
    attempts: int,
    status: int | None,
    error: str,
) -> None:
    """Record one webhook notification."""
    row = _row(session, project, name)
    session.add(
        AlertDeliveryRow(
            project_id=row.project_id,
            rule_id=row.id,
            url=url[:2000],
            event=event,
            outcome=outcome,
            attempts=attempts,
            status=status,
            error=error[:500],
        )
    )
    session.flush()


def deliveries(session: Session, project: str, name: str, limit: int = 50) -> list[dict[str, Any]]:
    """A rule's notifications, newest first."""
    row = _row(session, project, name)
    found = session.scalars(
        select(AlertDeliveryRow)
        .where(AlertDeliveryRow.rule_id == row.id)
        .order_by(AlertDeliveryRow.created_at.desc())
        .limit(limit)
    )
    return [
        {
            "url": d.url,
            "event": d.event,
            "outcome": d.outcome,
            "attempts": d.attempts,
            "status": d.status,
            "error": d.error,
            "time": d.created_at,
        }
        for d in found
    ]
