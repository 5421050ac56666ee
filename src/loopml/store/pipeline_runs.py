"""Runs of pipeline versions in the metadata DB: create, read, list, cancel, attempt logs.

A run is created with one step row per step (``StepPlan``): roots QUEUED and the rest
PENDING (``core.pipeline_policy.first_status``). The queue its steps then go through
(claims, leases, fencing) is ``store.pipeline_queue``; moving a run forward is
``store.pipeline_settle``. Every change appends its event in the same transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.pipeline_policy import first_status
from loopml.core.pipelines import (
    CURSOR_PATTERN,
    AttemptStatus,
    PipelineRun,
    RunStatus,
    StepAttempt,
    StepError,
    StepRun,
    StepStatus,
    validate_run_id,
)
from loopml.core.types import Page
from loopml.store import events
from loopml.store._checks import check_actor, check_limit
from loopml.store.orm import (
    PipelineRow,
    PipelineRunRow,
    PipelineVersionRow,
    ProjectRow,
    StepAttemptRow,
    StepRunRow,
)
from loopml.store.pipeline_settle import advance, cancel_waiting, lock_run
from loopml.store.pipelines import require
from loopml.store.project_lookup import project_row

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StepPlan:
    """One step row to create with a run (from the version's definition)."""

    name: str
    position: int
    uses: str
    needs: list[str]
    max_retries: int
    retry: dict[str, float]
    timeout_s: float | None
    cache: bool
    cpus: float = 1.0


def _error(data: dict[str, Any] | None) -> StepError | None:
    return None if data is None else StepError.model_validate(data)


def _attempt(row: StepAttemptRow) -> StepAttempt:
    return StepAttempt(
        attempt=row.attempt,
        worker=row.worker,
        status=AttemptStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=_error(row.error),
        log_key=row.log_key,
    )


def _step(row: StepRunRow, attempts: list[StepAttemptRow]) -> StepRun:
    return StepRun(
        id=row.id,
        name=row.name,
        uses=row.uses,
        status=StepStatus(row.status),
        needs=list(row.needs),
        attempt=row.attempt,
        failures=row.failures,
        max_retries=row.max_retries,
        inputs=row.inputs,
        outputs=row.outputs,
        error=_error(row.error),
        cache_key=row.cache_key,
        cached_from=row.cached_from,
        next_attempt_at=row.next_attempt_at if row.status == StepStatus.QUEUED else None,
        started_at=row.started_at,
        finished_at=row.finished_at,
        attempts=[_attempt(a) for a in attempts],
    )


def _run(
    row: PipelineRunRow, project: str, pipeline: str, steps: list[StepRun] | None = None
) -> PipelineRun:
    return PipelineRun(
        id=row.id,
        project=project,
        pipeline=pipeline,
        version=row.version,
        status=RunStatus(row.status),
        inputs=row.inputs,
        outputs=row.outputs,
        error=row.error,
        actor=row.actor,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        steps=steps,
    )


def create_run(
    session: Session,
    project: str,
    name: str,
    *,
    version_id: str,
    inputs: dict[str, Any],
    steps: list[StepPlan],
    actor: str,
) -> PipelineRun:
    """Queue a run of a version: steps that need nothing are QUEUED at once, the others
    PENDING until what they need succeeded. Emits ``pipeline.run.queued``."""
    check_actor(actor)
    row, project_id = require(session, project, name)
    version = session.get(PipelineVersionRow, version_id)
    if version is None or version.pipeline_id != row.id:
        raise NotFoundError("no such pipeline version", details={"pipeline": name})
    now = utcnow()
    run = PipelineRunRow(
        project_id=project_id,
        pipeline_id=row.id,
        version_id=version.id,
        version=version.version,
        status=RunStatus.QUEUED.value,
        inputs=inputs,
        actor=actor,
    )
    session.add(run)
    session.flush()
    # A step with a condition waits for advance() to read it, even when it needs nothing.
    conditional = set(version.definition.get("conditions", {}))
    for plan in steps:
        status = first_status(plan.needs, plan.name in conditional)
        session.add(
            StepRunRow(
                run_id=run.id,
                name=plan.name,
                position=plan.position,
                uses=plan.uses,
                status=status.value,
                needs=plan.needs,
                max_retries=plan.max_retries,
                retry=plan.retry,
                timeout_s=plan.timeout_s,
                cache=plan.cache,
                cpus=plan.cpus,
                next_attempt_at=now if status == StepStatus.QUEUED else None,
            )
        )
    session.flush()
    events.append(
        session,
        type="pipeline.run.queued",
        subject=name,
        project=project,
        payload={"pipeline": name, "run_id": run.id, "version": version.version},
        actor=actor,
    )
    if conditional:
        advance(session, run, now)
    return _run(run, project, name)


def _run_row(session: Session, project: str, run_id: str) -> tuple[PipelineRunRow, str]:
    validate_run_id(run_id)
    project_id = project_row(session, project).id
    found = session.execute(
        select(PipelineRunRow, PipelineRow.name)
        .join(PipelineRow, PipelineRow.id == PipelineRunRow.pipeline_id)
        .where(PipelineRunRow.id == run_id, PipelineRunRow.project_id == project_id)
    ).one_or_none()
    if found is None:
        raise NotFoundError(
            f"pipeline run {run_id!r} not found in project {project!r}",
            details={"project": project, "run": run_id},
        )
    return found[0], found[1]


def _steps(session: Session, run_id: str) -> list[StepRun]:
    rows = list(
        session.scalars(
            select(StepRunRow)
            .where(StepRunRow.run_id == run_id)
            .order_by(StepRunRow.position, StepRunRow.name)
        )
    )
    attempts: dict[str, list[StepAttemptRow]] = defaultdict(list)
    if rows:
        for attempt in session.scalars(
            select(StepAttemptRow)
            .where(StepAttemptRow.step_run_id.in_([r.id for r in rows]))
            .order_by(StepAttemptRow.attempt)
        ):
            attempts[attempt.step_run_id].append(attempt)
    return [_step(row, attempts[row.id]) for row in rows]


def get_run(session: Session, project: str, run_id: str) -> PipelineRun:
    """A run with its steps and each step's attempts.

    Raises:
        ValidationError: a malformed run id.
        NotFoundError: no such project or run.
    """
    row, name = _run_row(session, project, run_id)
    return _run(row, project, name, _steps(session, row.id))


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    if not CURSOR_PATTERN.fullmatch(cursor):
        raise ValidationError(
            f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
            details={"field": "cursor"},
        )
    micros, run_id = cursor.split("-")
    return _EPOCH + timedelta(microseconds=int(micros)), run_id


def _cursor(row: PipelineRunRow) -> str:
    micros = (row.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{row.id}"


def recent_runs(session: Session, projects: Sequence[str], *, limit: int) -> list[PipelineRun]:
    """The ``limit`` newest runs of any of ``projects``, newest first (one query)."""
    check_limit(limit)
    query = (
        select(PipelineRunRow, PipelineRow.name, ProjectRow.name)
        .join(PipelineRow, PipelineRow.id == PipelineRunRow.pipeline_id)
        .join(ProjectRow, ProjectRow.id == PipelineRunRow.project_id)
        .where(ProjectRow.name.in_(list(projects)))
        .order_by(PipelineRunRow.created_at.desc(), PipelineRunRow.id.desc())
        .limit(limit)
    )
    return [_run(row, project, name) for row, name, project in session.execute(query).tuples()]


def list_runs(
    session: Session,
    project: str,
    *,
    pipeline: str | None = None,
    status: RunStatus | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[PipelineRun]:
    """A project's runs (of one pipeline, in one status), newest first.

    Raises:
        NotFoundError: no such project or pipeline.
        ValidationError: a bad ``limit`` or ``cursor``.
    """
    check_limit(limit)
    project_id = project_row(session, project).id
    query = (
        select(PipelineRunRow, PipelineRow.name)
        .join(PipelineRow, PipelineRow.id == PipelineRunRow.pipeline_id)
        .where(PipelineRunRow.project_id == project_id)
    )
    if pipeline is not None:
        query = query.where(PipelineRunRow.pipeline_id == require(session, project, pipeline)[0].id)
    if status is not None:
        query = query.where(PipelineRunRow.status == status.value)
    if cursor is not None:
        at, last_id = _parse_cursor(cursor)
        query = query.where(
            or_(
                PipelineRunRow.created_at < at,
                and_(PipelineRunRow.created_at == at, PipelineRunRow.id < last_id),
            )
        )
    order = (PipelineRunRow.created_at.desc(), PipelineRunRow.id.desc())
    rows = list(session.execute(query.order_by(*order).limit(limit + 1)))
    items = [_run(row, project, name) for row, name in rows[:limit]]
    next_cursor = _cursor(rows[limit - 1][0]) if len(rows) > limit else None
    return Page[PipelineRun](items=items, next_cursor=next_cursor)


def cancel_run(session: Session, project: str, run_id: str, *, actor: str) -> PipelineRun:
    """Cancel a run: steps not started are CANCELLED at once; running ones are stopped by
    their workers at the next heartbeat (the run is CANCELLING until they have). Cancelling a
    finished run changes nothing. Emits ``pipeline.run.cancel_requested``.

    Raises:
        NotFoundError: no such project or run.
    """
    check_actor(actor)
    found, name = _run_row(session, project, run_id)
    run = lock_run(session, found.id)
    if RunStatus(run.status).finished or run.status == RunStatus.CANCELLING:
        return get_run(session, project, run_id)
    now = utcnow()
    run.status = RunStatus.CANCELLING.value
    cancel_waiting(session, run.id, now)
    events.append(
        session,
        type="pipeline.run.cancel_requested",
        subject=name,
        project=project,
        payload={"pipeline": name, "run_id": run.id},
        actor=actor,
    )
    advance(session, run, now)
    return get_run(session, project, run_id)


def attempt_log(
    session: Session, project: str, run_id: str, step: str, attempt: int | None = None
) -> StepAttempt:
    """An attempt of a run's step (its newest when ``attempt`` is ``None``), for its log key.

    Raises:
        NotFoundError: no such run, step or attempt, or the step never started.
    """
    run, _ = _run_row(session, project, run_id)
    row = session.scalars(
        select(StepRunRow).where(StepRunRow.run_id == run.id, StepRunRow.name == step)
    ).one_or_none()
    if row is None:
        raise NotFoundError(
            f"run {run_id} has no step {step[:80]!r}", details={"run": run_id, "step": step}
        )
    query = select(StepAttemptRow).where(StepAttemptRow.step_run_id == row.id)
    if attempt is not None:
        query = query.where(StepAttemptRow.attempt == attempt)
    found = session.scalars(query.order_by(StepAttemptRow.attempt.desc()).limit(1)).first()
    if found is None:
        what = f"attempt {attempt}" if attempt is not None else "an attempt yet"
        raise NotFoundError(
            f"step {step!r} of run {run_id} has no {what} (status {row.status})",
            details={"run": run_id, "step": step, "status": row.status},
        )
    return _attempt(found)
