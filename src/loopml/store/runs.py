"""Runs: create, read, heartbeat, end, delete, and mark LOST when the heartbeat stops.

Every function takes a ``Session`` from ``MetadataStore.session()``. Status changes append an
event (``run.created``, ``run.finished``, ``run.failed``, ``run.killed``, ``run.lost``,
``run.deleted``) in the same transaction. What a run logs lives in ``run_logs``; search in
``run_search``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import ScalarSelect, Select, select, update
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.errors import ConflictError, NotFoundError, ValidationError
from loopml.core.ids import new_id
from loopml.core.runs import EndStatus, Run, validate_run_id
from loopml.store import events, experiments
from loopml.store._checks import check_actor, check_text
from loopml.store.orm import (
    ExperimentRow,
    ProjectRow,
    RunRow,
)

ENDED: frozenset[str] = frozenset({"FINISHED", "FAILED", "KILLED"})
MAX_CODE_VERSION_BYTES = 4096
MAX_HEARTBEAT_TIMEOUT_S = 86_400


def to_domain(row: RunRow, project: str, experiment: str, **extra: Any) -> Run:
    """A run row as the domain ``Run``; ``extra`` fills params, metrics, tags or inputs."""
    return Run(
        id=row.id,
        project=project,
        experiment=experiment,
        name=row.name,
        status=row.status,
        start_time=row.start_time,
        end_time=row.end_time,
        heartbeat_at=row.heartbeat_at,
        heartbeat_timeout_s=row.heartbeat_timeout_s,
        code_version=row.code_version,
        actor=row.actor,
        parent_run_id=row.parent_run_id,
        deleted_at=row.deleted_at,
        **extra,
    )


def project_id_of(project: str) -> ScalarSelect[str]:
    """The project's id as a subquery, so a run lookup checks its project in one query."""
    return select(ProjectRow.id).where(ProjectRow.name == project).scalar_subquery()


def select_run(project: str, run_id: str) -> Select[tuple[RunRow, str]]:
    return (
        select(RunRow, ExperimentRow.name)
        .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
        .where(RunRow.id == validate_run_id(run_id), RunRow.project_id == project_id_of(project))
    )


def experiment_of(session: Session, project: str, run_id: str) -> str | None:
    """The name of the experiment of run ``run_id`` in ``project``; ``None`` when the project
    has no such run."""
    query = (
        select(ExperimentRow.name)
        .join(RunRow, RunRow.experiment_id == ExperimentRow.id)
        .where(RunRow.id == validate_run_id(run_id), RunRow.project_id == project_id_of(project))
    )
    return session.scalars(query).one_or_none()


def not_found(project: str, run_id: str) -> NotFoundError:
    """The error for a run that is not in ``project``."""
    return NotFoundError(
        f"run {run_id!r} not found in project {project!r}",
        details={"project": project, "run_id": run_id},
    )


def require(session: Session, project: str, run_id: str) -> tuple[RunRow, str]:
    """The run's row and its experiment's name; ``NotFoundError`` if not in ``project``."""
    found = session.execute(select_run(project, run_id)).one_or_none()
    if found is None:
        experiments.project_id(session, project)  # a missing project says so
        raise not_found(project, run_id)
    return found[0], found[1]


def _check_code_version(code_version: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json.dumps(code_version, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"invalid code_version: expected a JSON object ({exc})") from exc
    if size > MAX_CODE_VERSION_BYTES:
        raise ValidationError(
            f"code_version is {size} bytes as JSON, over the limit of {MAX_CODE_VERSION_BYTES}",
            details={"field": "code_version"},
        )
    return code_version


def _check_name(name: str) -> str:
    check_text("name", name, max_length=200)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValidationError(
            f"invalid run name {name[:80]!r}: control characters are not allowed",
            details={"field": "name"},
        )
    return name


def create(
    session: Session,
    project: str,
    experiment: str,
    *,
    name: str | None = None,
    heartbeat_timeout_s: int,
    code_version: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    actor: str,
) -> Run:
    """Start a RUNNING run in an existing experiment and append ``run.created``.

    Raises:
        ValidationError: a bad name, timeout, code version or actor.
        NotFoundError: no such project, experiment or parent run.
    """
    check_actor(actor)
    if not 1 <= heartbeat_timeout_s <= MAX_HEARTBEAT_TIMEOUT_S:
        raise ValidationError(
            f"invalid heartbeat_timeout_s {heartbeat_timeout_s!r}: expected 1 to "
            f"{MAX_HEARTBEAT_TIMEOUT_S} seconds",
            details={"field": "heartbeat_timeout_s"},
        )
    exp = experiments.get(session, project, experiment)
    if parent_run_id is not None:
        require(session, project, parent_run_id)
    run_id = new_id()
    now = utcnow()
    row = RunRow(
        id=run_id,
        project_id=experiments.project_id(session, project),
        experiment_id=exp.id,
        name=_check_name(name) if name is not None else f"run-{run_id[:8]}",
        status="RUNNING",
        start_time=now,
        heartbeat_at=now,
        heartbeat_timeout_s=heartbeat_timeout_s,
        code_version=_check_code_version(code_version or {}),
        actor=actor,
        parent_run_id=parent_run_id,
    )
    session.add(row)
    session.flush()
    payload = {"run_id": run_id, "experiment": experiment}
    events.append(
        session, type="run.created", subject=run_id, project=project, payload=payload, actor=actor
    )
    return to_domain(row, project, experiment)


def heartbeat(session: Session, project: str, run_id: str) -> datetime:
    """Record that a RUNNING run is alive; returns the new heartbeat time.

    Raises:
        NotFoundError: no such run in the project.
        ConflictError: the run is not RUNNING (it ended, or was marked LOST).
    """
    now = utcnow()
    result = session.execute(
        update(RunRow)
        .where(RunRow.id == validate_run_id(run_id), RunRow.project_id == project_id_of(project))
        .where(RunRow.status == "RUNNING")
        .values(heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        row, _ = require(session, project, run_id)
        raise ConflictError(
            f"run {run_id} is {row.status}, not RUNNING: heartbeats only keep a running run "
            "alive; start a new run to continue",
            details={"run_id": run_id, "status": row.status},
        )
    return now


def set_status(
    session: Session, project: str, run_id: str, status: EndStatus, *, actor: str
) -> Run:
    """End a run as FINISHED, FAILED or KILLED; a LOST run may still report its real end.

    Setting the status a run already has is a no-op, so a retried request is harmless.

    Raises:
        NotFoundError: no such run in the project.
        ConflictError: the run already ended with another status.
        ValidationError: ``status`` is not an end status.
    """
    if status not in ENDED:
        raise ValidationError(
            f"invalid status {status!r}: a run can be set to FINISHED, FAILED or KILLED",
            details={"field": "status"},
        )
    check_actor(actor)
    row, experiment = require(session, project, run_id)
    if row.status == status:
        return to_domain(row, project, experiment)
    if row.status in ENDED:
        raise ConflictError(
            f"run {run_id} already ended as {row.status}; its status cannot change to {status}",
            details={"run_id": run_id, "status": row.status},
        )
    row.status = status
    row.end_time = utcnow()
    session.flush()
    event_type = f"run.{status.lower()}"
    events.append(session, type=event_type, subject=run_id, project=project, actor=actor)
    return to_domain(row, project, experiment)


def resume(session: Session, project: str, run_id: str, *, actor: str) -> Run:
    """Set an ended (or LOST) run RUNNING again, as MLflow's ``start_run(run_id=...)`` does:
    its end time is cleared, its heartbeat restarts, and ``run.resumed`` records the status
    it left. Resuming a RUNNING run is a no-op.

    Raises:
        NotFoundError: no such run in the project.
        ConflictError: the run is soft-deleted (restore it first).
    """
    check_actor(actor)
    row, experiment = require(session, project, run_id)
    if row.status == "RUNNING":
        return to_domain(row, project, experiment)
    if row.deleted_at is not None:
        raise ConflictError(
            f"run {run_id} is deleted; restore it before resuming it",
            details={"run_id": run_id, "status": row.status},
        )
    previous = row.status
    row.status = "RUNNING"
    row.end_time = None
    row.heartbeat_at = utcnow()
    session.flush()
    events.append(
        session,
        type="run.resumed",
        subject=run_id,
        project=project,
        payload={"run_id": run_id, "from_status": previous},
        actor=actor,
    )
    return to_domain(row, project, experiment)


def set_deleted(session: Session, project: str, run_id: str, deleted: bool, *, actor: str) -> Run:
    """Soft-delete a run (MLflow's delete-run) or restore it; what it logged stays.

    Appends ``run.trashed`` or ``run.restored`` when the state changes; repeating is a no-op.

    Raises:
        NotFoundError: no such run in the project.
    """
    check_actor(actor)
    row, experiment = require(session, project, run_id)
    if (row.deleted_at is not None) != deleted:
        row.deleted_at = utcnow() if deleted else None
        session.flush()
        event_type = "run.trashed" if deleted else "run.restored"
        events.append(session, type=event_type, subject=run_id, project=project, actor=actor)
    return to_domain(row, project, experiment)


def rename(session: Session, project: str, run_id: str, name: str, *, actor: str) -> Run:
    """Give a run a new display name.

    Raises:
        NotFoundError: no such run in the project.
        ValidationError: a bad name.
    """
    check_actor(actor)
    row, experiment = require(session, project, run_id)
    row.name = _check_name(name)
    session.flush()
    return to_domain(row, project, experiment)
