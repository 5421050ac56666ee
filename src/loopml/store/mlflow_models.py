"""Models MLflow 3 clients log (``core.mlflow_models``): create, read, finalize, params,
tags, search and delete. Every function takes a ``Session``; creating one appends
``mlflow_model.created``.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.errors import ConflictError, NotFoundError, ValidationError
from loopml.core.mlflow_models import (
    MAX_ENTRIES,
    MAX_METRICS,
    MAX_NAME,
    MlflowModel,
    MlflowModelStatus,
    ModelMetric,
)
from loopml.core.runs import PARAM_VALUE_MAX, TAG_VALUE_MAX, validate_key
from loopml.core.types import Page
from loopml.store import events, experiments, runs
from loopml.store._checks import check_actor, check_limit, check_text
from loopml.store.orm import MlflowModelRow
from loopml.store.run_search import parse_offset


def _to_domain(row: MlflowModelRow, project: str) -> MlflowModel:
    return MlflowModel(
        id=row.id,
        project=project,
        experiment_id=row.experiment_id,
        name=row.name,
        model_type=row.model_type,
        source_run_id=row.source_run_id,
        status=row.status,
        status_message=row.status_message,
        params=dict(row.params),
        tags=dict(row.tags),
        actor=row.actor,
        created_at=row.created_at,
        updated_at=row.updated_at,
        metrics=[_metric(point) for point in row.metrics or []],
    )


def _metric(point: list[Any]) -> ModelMetric:
    key, value, step, timestamp_ms, run_id = point
    shown = math.nan if value is None else float(value)  # JSON has no NaN
    return ModelMetric(key=key, value=shown, step=step, timestamp_ms=timestamp_ms, run_id=run_id)


def _entries(kind: str, entries: dict[str, str], max_value: int) -> dict[str, str]:
    if len(entries) > MAX_ENTRIES:
        raise ValidationError(f"a logged model holds at most {MAX_ENTRIES} {kind}s")
    for key, value in entries.items():
        validate_key(kind, key)
        if not isinstance(value, str) or len(value) > max_value:
            raise ValidationError(
                f"{kind} {key!r}: expected a string of at most {max_value} characters"
            )
    return entries


def create(
    session: Session,
    project: str,
    experiment_id: str,
    *,
    name: str,
    model_type: str = "",
    source_run_id: str | None = None,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    actor: str,
) -> MlflowModel:
    """Record a PENDING model in an experiment of ``project``.

    Raises:
        NotFoundError: no such project, experiment or source run.
        ValidationError: a bad name, model type, param or tag.
    """
    check_actor(actor)
    check_text("name", name, max_length=MAX_NAME)
    check_text("model_type", model_type, max_length=200, allow_empty=True)
    experiment = experiments.get_by_id(session, project, experiment_id)
    if source_run_id:
        runs.require(session, project, source_run_id)
    row = MlflowModelRow(
        project_id=experiments.project_id(session, project),
        experiment_id=experiment.id,
        source_run_id=source_run_id or None,
        name=name,
        model_type=model_type,
        status="PENDING",
        status_message="",
        params=_entries("param", dict(params or {}), PARAM_VALUE_MAX),
        tags=_entries("tag", dict(tags or {}), TAG_VALUE_MAX),
        actor=actor,
    )
    session.add(row)
    session.flush()
    events.append(
        session, type="mlflow_model.created", subject=row.id, project=project, actor=actor
    )
    return _to_domain(row, project)


def _row(session: Session, project: str, model_id: str) -> MlflowModelRow:
    pid = experiments.project_id(session, project)
    row = session.get(MlflowModelRow, model_id) if len(model_id) == 32 else None
    if row is None or row.project_id != pid:
        raise NotFoundError(
            f"logged model {model_id[:40]!r} not found in project {project!r}",
            details={"project": project, "model_id": model_id[:40]},
        )
    return row


def get(session: Session, project: str, model_id: str) -> MlflowModel:
    """One model; ``NotFoundError`` if it is not in ``project``."""
    return _to_domain(_row(session, project, model_id), project)


def finalize(
    session: Session, project: str, model_id: str, status: MlflowModelStatus, message: str = ""
) -> MlflowModel:
    """Settle a PENDING model as READY or FAILED (setting the status it has is a no-op).

    Raises:
        ConflictError: it already settled with another status.
    """
    row = _row(session, project, model_id)
    if row.status not in ("PENDING", status):
        raise ConflictError(
            f"logged model {model_id} is already {row.status}; it cannot become {status}",
            details={"model_id": model_id, "status": row.status},
        )
    row.status = status
    row.status_message = check_text("status_message", message, max_length=4000, allow_empty=True)
    session.flush()
    return _to_domain(row, project)


def log_metrics(session: Session, project: str, model_id: str, points: list[ModelMetric]) -> None:
    """Add metric points logged with the model's id; a point of the same key and step
    replaces the one before (a retried request is harmless).

    Raises:
        NotFoundError: no such model.
        ValidationError: a bad key, or more than ``MAX_METRICS`` points in all.
    """
    row = _row(session, project, model_id)
    kept: dict[tuple[str, int], list[Any]] = {(p[0], p[2]): p for p in row.metrics or []}
    for point in points:
        validate_key("metric", point.key)
        value = None if math.isnan(point.value) else point.value
        entry = [point.key, value, point.step, point.timestamp_ms, point.run_id]
        kept[(point.key, point.step)] = entry
    if len(kept) > MAX_METRICS:
        raise ValidationError(
            f"a logged model holds at most {MAX_METRICS} metric points; model {model_id} "
            f"would hold {len(kept)}",
            details={"field": "metrics"},
        )
    row.metrics = sorted(kept.values(), key=lambda p: (p[0], p[2]))
    session.flush()


def update_entries(
    session: Session,
    project: str,
    model_id: str,
    *,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    remove_tag: str | None = None,
) -> MlflowModel:
    """Add params (write-once, as a run's), set tags, or remove a tag.

    Raises:
        ConflictError: a param already has another value.
        NotFoundError: no such model, or no tag ``remove_tag``.
    """
    row = _row(session, project, model_id)
    if params:
        for key, value in params.items():
            if row.params.get(key, value) != value:
                raise ConflictError(f"param {key!r} of logged model {model_id} cannot change")
        row.params = _entries("param", {**row.params, **params}, PARAM_VALUE_MAX)
    if tags:
        row.tags = _entries("tag", {**row.tags, **tags}, TAG_VALUE_MAX)
    if remove_tag is not None:
        if remove_tag not in row.tags:
            raise NotFoundError(f"logged model {model_id} has no tag {remove_tag!r}")
        row.tags = {k: v for k, v in row.tags.items() if k != remove_tag}
    session.flush()
    return _to_domain(row, project)


def search(
    session: Session,
    project: str,
    *,
    experiment_ids: list[str],
    name: str | None = None,
    source_run_id: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[MlflowModel]:
    """Models of these experiments (all when empty), newest first, ``limit`` at a time."""
    check_limit(limit)
    query = select(MlflowModelRow).where(
        MlflowModelRow.project_id == experiments.project_id(session, project)
    )
    if experiment_ids:
        query = query.where(MlflowModelRow.experiment_id.in_(experiment_ids))
    if name is not None:
        query = query.where(MlflowModelRow.name == name)
    if source_run_id is not None:
        query = query.where(MlflowModelRow.source_run_id == source_run_id)
    offset = parse_offset(cursor)
    query = query.order_by(MlflowModelRow.created_at.desc(), MlflowModelRow.id.desc())
    rows = list(session.scalars(query.offset(offset).limit(limit + 1)))
    items = [_to_domain(row, project) for row in rows[:limit]]
    next_cursor = str(offset + limit) if len(rows) > limit else None
    return Page[MlflowModel](items=items, next_cursor=next_cursor)


def of_runs(session: Session, run_ids: list[str]) -> dict[str, list[str]]:
    """The ids of the models each run produced (its MLflow ``outputs``)."""
    query = select(MlflowModelRow.source_run_id, MlflowModelRow.id).where(
        MlflowModelRow.source_run_id.in_(run_ids)
    )
    found: dict[str, list[str]] = {rid: [] for rid in run_ids}
    for rid, model_id in session.execute(query):
        found[rid].append(model_id)
    return found


def delete(session: Session, project: str, model_id: str, *, actor: str) -> str:
    """Delete a model's record; returns its project's id, for freeing its files."""
    row = _row(session, project, model_id)
    project_id = row.project_id
    session.delete(row)
    session.flush()
    events.append(
        session, type="mlflow_model.deleted", subject=model_id, project=project, actor=actor
    )
    return project_id


def set_source_run(session: Session, project: str, model_id: str, run_id: str) -> None:
    """Record the run that produced a model (MLflow's ``log-outputs``), if none yet."""
    row = _row(session, project, model_id)
    runs.require(session, project, run_id)
    if row.source_run_id is None:
        row.source_run_id = run_id
        session.flush()
