"""Claiming a step: the claim under a lease, its heartbeat, and what the step needs to run.

A claim turns one QUEUED step whose ``next_attempt_at`` has come into RUNNING, owned by the
claiming worker until ``lease_expires_at``, and adds one to its ``fencing_token``. On
PostgreSQL the candidate is picked with ``SELECT ... FOR UPDATE SKIP LOCKED``; on SQLite the
transaction's ``BEGIN IMMEDIATE`` makes claims single-writer. ``owned`` is the fence every
later write of the worker is conditioned on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.pipelines import AttemptStatus, RunStatus, StepStatus, log_key
from loopml.store.orm import (
    PipelineRow,
    PipelineRunRow,
    PipelineVersionRow,
    ProjectRow,
    StepAttemptRow,
    StepRunRow,
)


@dataclass(frozen=True)
class Claim:
    """A step a worker now holds: what to run, and the token to fence its writes with."""

    step_run_id: str
    run_id: str
    project: str
    project_id: str
    pipeline: str
    version_id: str
    step: str
    uses: str
    attempt: int
    token: int
    lease_expires_at: datetime
    timeout_s: float | None
    cache: bool
    cpus: float = 1.0


@dataclass(frozen=True)
class Beat:
    """The answer to a heartbeat: whether the lease is still ours, and whether the run is
    being cancelled (the worker then stops the step)."""

    ok: bool
    cancelling: bool = False


@dataclass(frozen=True)
class RunContext:
    """What resolving a step's references needs: the run's inputs, the version's
    definition, and the outputs of the run's finished steps."""

    inputs: dict[str, Any]
    definition: dict[str, Any]
    outputs: dict[str, dict[str, Any]]


def claim(
    session: Session,
    worker: str,
    *,
    lease_s: float,
    max_cpus: float | None = None,
    now: datetime | None = None,
) -> Claim | None:
    """Claim the next runnable step for ``worker``, or ``None`` when none is due; with
    ``max_cpus``, only a step that asked for at most that many CPUs (the others wait for a
    worker with room)."""
    now = now or utcnow()
    fits = () if max_cpus is None else (StepRunRow.cpus <= max_cpus,)
    row = session.scalars(
        select(StepRunRow)
        .where(
            StepRunRow.status == StepStatus.QUEUED.value,
            StepRunRow.next_attempt_at <= now,
            *fits,
        )
        .order_by(StepRunRow.next_attempt_at, StepRunRow.position, StepRunRow.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        return None
    facts = session.execute(
        select(
            PipelineRunRow.project_id, ProjectRow.name, PipelineRow.name, PipelineRunRow.version_id
        )
        .join(ProjectRow, ProjectRow.id == PipelineRunRow.project_id)
        .join(PipelineRow, PipelineRow.id == PipelineRunRow.pipeline_id)
        .where(PipelineRunRow.id == row.run_id)
    ).one()
    row.status = StepStatus.RUNNING.value
    row.attempt += 1
    row.fencing_token += 1
    row.lease_owner = worker
    row.lease_expires_at = now + timedelta(seconds=lease_s)
    row.started_at = row.started_at or now
    session.add(
        StepAttemptRow(
            step_run_id=row.id,
            attempt=row.attempt,
            worker=worker,
            status=AttemptStatus.RUNNING.value,
            started_at=now,
            log_key=log_key(facts[0], row.run_id, row.name, row.attempt),
        )
    )
    session.flush()
    return Claim(
        step_run_id=row.id,
        run_id=row.run_id,
        project=facts[1],
        project_id=facts[0],
        pipeline=facts[2],
        version_id=facts[3],
        step=row.name,
        uses=row.uses,
        attempt=row.attempt,
        token=row.fencing_token,
        lease_expires_at=row.lease_expires_at,
        timeout_s=row.timeout_s,
        cache=row.cache,
        cpus=row.cpus,
    )


def mark_run_started(session: Session, run_id: str, now: datetime | None = None) -> None:
    """A QUEUED run becomes RUNNING once a worker claimed one of its steps."""
    session.execute(
        update(PipelineRunRow)
        .where(PipelineRunRow.id == run_id, PipelineRunRow.status == RunStatus.QUEUED.value)
        .values(status=RunStatus.RUNNING.value, started_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )


def owned(step_run_id: str, token: int) -> Any:
    """The fence: the step is still RUNNING under this token (its lease was not taken over)."""
    return (
        StepRunRow.id == step_run_id,
        StepRunRow.fencing_token == token,
        StepRunRow.status == StepStatus.RUNNING.value,
    )


def heartbeat(session: Session, step_run_id: str, token: int, *, lease_s: float) -> Beat:
    """Extend the lease by ``lease_s``; ``ok`` is false when it is no longer ours."""
    now = utcnow()
    result = session.execute(
        update(StepRunRow)
        .where(*owned(step_run_id, token))
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return Beat(ok=False)
    status = session.scalar(
        select(PipelineRunRow.status)
        .join(StepRunRow, StepRunRow.run_id == PipelineRunRow.id)
        .where(StepRunRow.id == step_run_id)
    )
    return Beat(ok=True, cancelling=status == RunStatus.CANCELLING.value)


def context(session: Session, run_id: str) -> RunContext:
    """The run's inputs, its version's definition and its finished steps' outputs."""
    run = session.get(PipelineRunRow, run_id)
    assert run is not None, "a claimed step's run exists (runs are deleted with their steps)"
    version = session.get(PipelineVersionRow, run.version_id)
    assert version is not None
    rows = session.execute(
        select(StepRunRow.name, StepRunRow.outputs).where(
            StepRunRow.run_id == run_id,
            StepRunRow.status.in_([StepStatus.SUCCEEDED.value, StepStatus.CACHED.value]),
        )
    )
    return RunContext(
        inputs=dict(run.inputs),
        definition=dict(version.definition),
        outputs={name: dict(outputs or {}) for name, outputs in rows},
    )


def start(
    session: Session, step_run_id: str, token: int, *, inputs: dict[str, Any], cache_key: str | None
) -> bool:
    """Record the attempt's resolved inputs and cache key (its lineage) while it is ours."""
    result = session.execute(
        update(StepRunRow)
        .where(*owned(step_run_id, token))
        .values(inputs=inputs, cache_key=cache_key)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1
