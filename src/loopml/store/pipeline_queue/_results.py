"""A claimed step's results, each written only while the step is still the token's: success
(with its outputs cached), failure (retried or failed by ``core.pipeline_policy``), a stop
for cancellation, or a release. Each moves the run on under the run's lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.pipeline_policy import after_failure, after_release
from loopml.core.pipelines import AttemptStatus, RunStatus, StepStatus
from loopml.store import events
from loopml.store.orm import PipelineRow, PipelineRunRow, ProjectRow, StepAttemptRow, StepRunRow
from loopml.store.pipeline_queue._cache import remember
from loopml.store.pipeline_queue._claims import owned
from loopml.store.pipeline_settle import SYSTEM_ACTOR, advance, lock_run


def locked(
    session: Session, step_run_id: str, token: int
) -> tuple[PipelineRunRow, StepRunRow] | None:
    """The step's run (locked) and the step, if the step is still this token's."""
    run_id = session.scalar(select(StepRunRow.run_id).where(StepRunRow.id == step_run_id))
    if run_id is None:
        return None
    run = lock_run(session, run_id)
    step = session.scalars(
        select(StepRunRow)
        .where(*owned(step_run_id, token))
        .execution_options(populate_existing=True)
    ).one_or_none()
    return None if step is None else (run, step)


def _end_attempt(
    session: Session,
    step: StepRunRow,
    status: AttemptStatus,
    now: datetime,
    error: dict[str, Any] | None,
) -> None:
    session.execute(
        update(StepAttemptRow)
        .where(StepAttemptRow.step_run_id == step.id, StepAttemptRow.attempt == step.attempt)
        .values(status=status.value, finished_at=now, error=error)
        .execution_options(synchronize_session=False)
    )


def _release_lease(step: StepRunRow) -> None:
    step.lease_owner = None
    step.lease_expires_at = None


def _event(
    session: Session, run: PipelineRunRow, step: StepRunRow, kind: str, **extra: Any
) -> None:
    facts = session.execute(
        select(PipelineRow.name, ProjectRow.name)
        .join(ProjectRow, ProjectRow.id == PipelineRow.project_id)
        .where(PipelineRow.id == run.pipeline_id)
    ).one()
    events.append(
        session,
        type=f"pipeline.step.{kind}",
        subject=facts[0],
        project=facts[1],
        payload={
            "pipeline": facts[0],
            "run_id": run.id,
            "step": step.name,
            "attempt": step.attempt,
            **extra,
        },
        actor=SYSTEM_ACTOR,
    )


def complete(
    session: Session,
    step_run_id: str,
    token: int,
    outputs: dict[str, Any],
    *,
    cached_from: str | None = None,
) -> bool:
    """The attempt succeeded (or reused cached outputs, with ``cached_from``): store the
    outputs, remember them under the step's cache key, and move the run on.

    Returns:
        ``False`` when the step is no longer this token's (its lease was taken over); then
        nothing was written. ``True`` also when this very result was committed before (a
        retry after a lost connection).
    """
    now = utcnow()
    found = locked(session, step_run_id, token)
    if found is None:
        row = session.get(StepRunRow, step_run_id)
        return bool(row is not None and row.fencing_token == token and StepStatus(row.status).done)
    run, step = found
    step.status = (StepStatus.CACHED if cached_from else StepStatus.SUCCEEDED).value
    step.outputs = outputs
    step.cached_from = cached_from
    step.error = None
    step.finished_at = now
    _release_lease(step)
    _end_attempt(session, step, AttemptStatus.SUCCEEDED, now, None)
    if step.cache and step.cache_key and not cached_from:
        remember(session, run, step)
    _event(session, run, step, "cached" if cached_from else "succeeded")
    advance(session, run, now)
    return True


def settle_failure(
    session: Session,
    run: PipelineRunRow,
    step: StepRunRow,
    error: dict[str, Any],
    *,
    retryable: bool,
    attempt_status: AttemptStatus,
    now: datetime,
) -> None:
    _end_attempt(session, step, attempt_status, now, error)
    _release_lease(step)
    step.error = error
    step.failures += 1
    verdict = after_failure(
        run_status=RunStatus(run.status),
        retryable=retryable,
        failures=step.failures,
        max_retries=step.max_retries,
        retry=step.retry,
    )
    step.status = verdict.status.value
    if verdict.delay_s is not None:
        step.next_attempt_at = now + timedelta(seconds=verdict.delay_s)
    else:
        step.finished_at = now
    if verdict.event is not None:
        _event(session, run, step, verdict.event, error=error.get("message", "")[:500])
    advance(session, run, now)


def fail(
    session: Session, step_run_id: str, token: int, error: dict[str, Any], *, retryable: bool
) -> bool:
    """The attempt failed: requeue the step after its backoff while retries remain and the
    error is retryable, else fail it (its dependents are then skipped).

    Returns:
        ``False`` when the step is no longer this token's; nothing was written then.
    """
    found = locked(session, step_run_id, token)
    if found is None:
        return False
    run, step = found
    settle_failure(
        session,
        run,
        step,
        error,
        retryable=retryable,
        attempt_status=AttemptStatus.FAILED,
        now=utcnow(),
    )
    return True


def cancelled(session: Session, step_run_id: str, token: int) -> bool:
    """The worker stopped the step because its run is being cancelled."""
    now = utcnow()
    found = locked(session, step_run_id, token)
    if found is None:
        return False
    run, step = found
    step.status = StepStatus.CANCELLED.value
    step.finished_at = now
    _release_lease(step)
    _end_attempt(session, step, AttemptStatus.CANCELLED, now, None)
    advance(session, run, now)
    return True


def release(session: Session, step_run_id: str, token: int) -> bool:
    """Give the step back unfinished (the worker is shutting down): it is QUEUED again at
    once and the attempt does not count against its retries."""
    now = utcnow()
    found = locked(session, step_run_id, token)
    if found is None:
        return False
    run, step = found
    _end_attempt(session, step, AttemptStatus.RELEASED, now, None)
    _release_lease(step)
    status = after_release(RunStatus(run.status))
    step.status = status.value
    if status == StepStatus.QUEUED:
        step.next_attempt_at = now
    else:
        step.finished_at = now
    advance(session, run, now)
    return True
