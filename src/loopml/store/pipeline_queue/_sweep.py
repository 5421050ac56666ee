"""The sweep: steps whose worker stopped renewing its lease are settled as failed attempts
(RELIABILITY 18, 20), and runs left with nothing to do are ended."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.pipeline_policy import lease_lost_error
from loopml.core.pipelines import AttemptStatus, RunStatus, StepStatus
from loopml.store.orm import PipelineRunRow, StepRunRow
from loopml.store.pipeline_queue._results import locked, settle_failure
from loopml.store.pipeline_settle import advance, lock_run

SWEEP_BATCH = 100


def sweep(session: Session, *, now: datetime | None = None) -> int:
    """Settle steps whose lease expired, as failed attempts under their retry policy (or
    CANCELLED when their run is being cancelled), and end runs with nothing left to do.

    Returns:
        How many expired leases were settled.
    """
    now = now or utcnow()
    expired = session.execute(
        select(StepRunRow.id, StepRunRow.fencing_token)
        .where(StepRunRow.status == StepStatus.RUNNING.value, StepRunRow.lease_expires_at < now)
        .limit(SWEEP_BATCH)
    ).all()
    settled = 0
    for step_run_id, token in expired:
        found = locked(session, step_run_id, token)
        if found is None:
            continue
        run, step = found
        if step.lease_expires_at is None or step.lease_expires_at >= now:
            continue  # renewed between the two reads
        error = lease_lost_error(step.lease_owner, step.lease_expires_at)
        settle_failure(
            session, run, step, error, retryable=True, attempt_status=AttemptStatus.LOST, now=now
        )
        settled += 1
    _settle_stragglers(session, now)
    return settled


def _settle_stragglers(session: Session, now: datetime) -> None:
    # A run whose every step ended is finished by the transaction that ended its last step;
    # this only catches what an older loopml or a manual database edit may have left.
    open_runs = session.scalars(
        select(PipelineRunRow.id)
        .where(
            PipelineRunRow.status.in_(
                [RunStatus.QUEUED.value, RunStatus.RUNNING.value, RunStatus.CANCELLING.value]
            ),
            ~select(StepRunRow.id)
            .where(
                StepRunRow.run_id == PipelineRunRow.id,
                StepRunRow.status.in_(
                    [StepStatus.PENDING.value, StepStatus.QUEUED.value, StepStatus.RUNNING.value]
                ),
            )
            .exists(),
        )
        .limit(SWEEP_BATCH)
    ).all()
    for run_id in open_runs:
        advance(session, lock_run(session, run_id), now)
