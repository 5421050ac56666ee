"""Moving a run forward after one of its steps changed: queue the steps whose upstream
steps all succeeded, skip those behind a failure or whose condition (``if``) is false, and
end the run when nothing is left. Which steps move, and how a run ends, is decided by
``loopml.core.pipeline_policy`` (``unblock``, ``final_status``); here the rows are locked,
read, written and the events appended.

Every caller holds the run's row lock (``lock_run``: ``FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` already serializes writers), so two steps of one run finishing at the
same time settle one after the other and the run always ends, exactly once. Claims never
take the run lock: they only turn QUEUED steps into RUNNING ones, which does not change
whether a run is finished, and keeping them out of it means a claim and a cancellation
can never wait on each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loopml.core.errors import NotFoundError
from loopml.core.pipeline_policy import (
    StepState,
    Unblocked,
    final_status,
    run_finished,
    run_outputs,
    unblock,
)
from loopml.core.pipelines import RunStatus, StepStatus
from loopml.store import events
from loopml.store.orm import PipelineRow, PipelineRunRow, PipelineVersionRow, ProjectRow, StepRunRow

SYSTEM_ACTOR = "system"


def lock_run(session: Session, run_id: str) -> PipelineRunRow:
    """The run's row, locked until the transaction ends."""
    run = session.scalars(
        select(PipelineRunRow)
        .where(PipelineRunRow.id == run_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if run is None:
        raise NotFoundError(f"pipeline run {run_id!r} not found", details={"run": run_id})
    return run


def cancel_waiting(session: Session, run_id: str, now: datetime) -> None:
    """CANCEL every step of the run that has not started.

    One conditional UPDATE: a step a worker claimed meanwhile is RUNNING by the time the
    row lock is ours, so the condition leaves it to its worker, which stops it at its next
    heartbeat.
    """
    session.execute(
        update(StepRunRow)
        .where(
            StepRunRow.run_id == run_id,
            StepRunRow.status.in_([StepStatus.PENDING.value, StepStatus.QUEUED.value]),
        )
        .values(status=StepStatus.CANCELLED.value, finished_at=now)
        .execution_options(synchronize_session=False)
    )


def _steps(session: Session, run_id: str) -> list[StepRunRow]:
    return list(
        session.scalars(
            select(StepRunRow)
            .where(StepRunRow.run_id == run_id)
            .execution_options(populate_existing=True)
        )
    )


def _conditions(session: Session, run: PipelineRunRow) -> dict[str, dict[str, str]]:
    version = session.get(PipelineVersionRow, run.version_id)
    return {} if version is None else dict(version.definition.get("conditions", {}))


def _wanted_outputs(session: Session, run: PipelineRunRow) -> dict[str, dict[str, str]]:
    version = session.get(PipelineVersionRow, run.version_id)
    return {} if version is None else dict(version.definition.get("outputs", {}))


def _state(row: StepRunRow) -> StepState:
    return StepState(
        name=row.name,
        status=StepStatus(row.status),
        needs=tuple(row.needs),
        outputs=row.outputs,
        position=row.position,
        error=row.error,
    )


def _apply(steps: list[StepRunRow], changes: dict[str, Unblocked], now: datetime) -> None:
    for step in steps:
        change = changes.get(step.name)
        if change is None:
            continue
        step.status = change.status.value
        if change.status == StepStatus.QUEUED:
            step.next_attempt_at = now
        else:
            step.finished_at = now
        if change.skipped_by is not None:
            step.inputs = change.skipped_by


def _finish(session: Session, run: PipelineRunRow, steps: list[StepState], now: datetime) -> None:
    status, error = final_status(RunStatus(run.status), steps)
    run.status = status.value
    run.error = error
    run.finished_at = now
    if status == RunStatus.SUCCEEDED:
        run.outputs = run_outputs(_wanted_outputs(session, run), run.inputs or {}, steps)
    found = session.execute(
        select(PipelineRow.name, ProjectRow.name)
        .join(ProjectRow, ProjectRow.id == PipelineRow.project_id)
        .where(PipelineRow.id == run.pipeline_id)
    ).one()
    payload: dict[str, Any] = {"pipeline": found[0], "run_id": run.id, "version": run.version}
    if error:
        payload["error"] = error[:1000]
    events.append(
        session,
        type=f"pipeline.run.{status.value.lower()}",
        subject=found[0],
        project=found[1],
        payload=payload,
        actor=SYSTEM_ACTOR,
    )


def advance(session: Session, run: PipelineRunRow, now: datetime) -> None:
    """Queue, skip or cancel the run's waiting steps as its finished ones allow, and end the
    run when every step has ended. The caller holds the run's lock."""
    if RunStatus(run.status).finished:
        return
    session.flush()
    if run.status == RunStatus.CANCELLING:
        cancel_waiting(session, run.id, now)
    rows = _steps(session, run.id)
    changes = unblock(
        [_state(r) for r in rows], conditions=_conditions(session, run), inputs=run.inputs or {}
    )
    _apply(rows, changes, now)
    steps = [_state(r) for r in rows]
    if run_finished(steps):
        _finish(session, run, steps, now)
    session.flush()
