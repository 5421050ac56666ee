"""Moving a run forward after one of its steps changed: queue the steps whose upstream
steps all succeeded, skip those behind a failure or whose condition (``if``) is false, and
end the run when nothing is left.

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
from loopml.core.pipelines import RunStatus, StepStatus
from loopml.store import events
from loopml.store.orm import PipelineRow, PipelineRunRow, PipelineVersionRow, ProjectRow, StepRunRow

SYSTEM_ACTOR = "system"
_BLOCKING = frozenset({StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED})


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


def _condition_value(
    source: dict[str, str], run: PipelineRunRow, by_name: dict[str, StepRunRow]
) -> Any:
    if "input" in source:
        return (run.inputs or {}).get(source["input"])
    upstream = by_name.get(source.get("step", ""))
    return None if upstream is None else (upstream.outputs or {}).get(source.get("output", ""))


def _unblock(
    steps: list[StepRunRow],
    now: datetime,
    run: PipelineRunRow,
    conditions: dict[str, dict[str, str]],
) -> None:
    by_name = {s.name: s for s in steps}
    changed = True
    while changed:
        changed = False
        for step in steps:
            if step.status != StepStatus.PENDING:
                continue
            needs = [StepStatus(by_name[n].status) for n in step.needs if n in by_name]
            if any(s in _BLOCKING for s in needs):
                step.status = StepStatus.SKIPPED.value
                step.finished_at = now
                changed = True
            elif all(s.done for s in needs):
                condition = conditions.get(step.name)
                value = None if condition is None else _condition_value(condition, run, by_name)
                if condition is not None and value is not True:
                    # A false condition is an outcome: SKIPPED, and the inputs say why.
                    step.status = StepStatus.SKIPPED.value
                    step.finished_at = now
                    step.inputs = {"if": condition.get("text", ""), "value": value}
                else:
                    step.status = StepStatus.QUEUED.value
                    step.next_attempt_at = now
                changed = True


def _outputs(session: Session, run: PipelineRunRow, steps: list[StepRunRow]) -> dict[str, Any]:
    version = session.get(PipelineVersionRow, run.version_id)
    wanted: dict[str, dict[str, str]] = (
        {} if version is None else version.definition.get("outputs", {})
    )
    by_name = {s.name: s for s in steps}
    found: dict[str, Any] = {}
    for name, source in wanted.items():
        if "input" in source:
            found[name] = run.inputs.get(source["input"])
        else:
            step = by_name.get(source.get("step", ""))
            found[name] = (step.outputs or {}).get(source.get("output", "")) if step else None
    return found


def _final(run: PipelineRunRow, steps: list[StepRunRow]) -> tuple[RunStatus, str | None]:
    failed = [s for s in steps if s.status == StepStatus.FAILED]
    if run.status == RunStatus.CANCELLING:
        return RunStatus.CANCELLED, "cancelled"
    if failed:
        first = min(failed, key=lambda s: s.position)
        message = (first.error or {}).get("message", "failed")
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return RunStatus.FAILED, f"step {first.name!r} failed{more}: {message}"[:4000]
    if any(s.status == StepStatus.CANCELLED for s in steps):
        return RunStatus.CANCELLED, "cancelled"
    return RunStatus.SUCCEEDED, None


def _finish(session: Session, run: PipelineRunRow, steps: list[StepRunRow], now: datetime) -> None:
    status, error = _final(run, steps)
    run.status = status.value
    run.error = error
    run.finished_at = now
    if status == RunStatus.SUCCEEDED:
        run.outputs = _outputs(session, run, steps)
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
    steps = _steps(session, run.id)
    _unblock(steps, now, run, _conditions(session, run))
    if all(StepStatus(s.status).finished for s in steps):
        _finish(session, run, steps, now)
    session.flush()
