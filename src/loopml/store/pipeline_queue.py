"""The step queue: claims with a lease, heartbeats, results fenced by a token, and the sweep
that takes back expired leases.

A claim turns one QUEUED step whose ``next_attempt_at`` has come into RUNNING, owned by the
claiming worker until ``lease_expires_at``, and adds one to its ``fencing_token``. On
PostgreSQL the candidate is picked with ``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent
claimers never wait on, or take, the same row; on SQLite the transaction's ``BEGIN
IMMEDIATE`` makes claims single-writer.

Every later write by the worker (``heartbeat``, ``start``, ``complete``, ``fail``,
``cancelled``, ``release``) names the token it was given and only changes a row that is
still RUNNING under that token: when the lease expired and the step was handed to another
worker, the write changes nothing and returns ``False`` (RELIABILITY 19). ``sweep`` settles
expired leases like a retryable failure, under the step's retry policy (RELIABILITY 18, 20).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.pipelines import AttemptStatus, RunStatus, StepStatus, log_key
from loopml.store import events
from loopml.store.orm import (
    PipelineRow,
    PipelineRunRow,
    PipelineVersionRow,
    ProjectRow,
    StepAttemptRow,
    StepCacheRow,
    StepRunRow,
)
from loopml.store.pipeline_settle import SYSTEM_ACTOR, advance, lock_run

SWEEP_BATCH = 100


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
    session: Session, worker: str, *, lease_s: float, now: datetime | None = None
) -> Claim | None:
    """Claim the next runnable step for ``worker``, or ``None`` when none is due."""
    now = now or utcnow()
    row = session.scalars(
        select(StepRunRow)
        .where(StepRunRow.status == StepStatus.QUEUED.value, StepRunRow.next_attempt_at <= now)
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
    )


def mark_run_started(session: Session, run_id: str, now: datetime | None = None) -> None:
    """A QUEUED run becomes RUNNING once a worker claimed one of its steps."""
    session.execute(
        update(PipelineRunRow)
        .where(PipelineRunRow.id == run_id, PipelineRunRow.status == RunStatus.QUEUED.value)
        .values(status=RunStatus.RUNNING.value, started_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )


def _owned(step_run_id: str, token: int) -> Any:
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
        .where(*_owned(step_run_id, token))
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
        .where(*_owned(step_run_id, token))
        .values(inputs=inputs, cache_key=cache_key)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def _locked(
    session: Session, step_run_id: str, token: int
) -> tuple[PipelineRunRow, StepRunRow] | None:
    run_id = session.scalar(select(StepRunRow.run_id).where(StepRunRow.id == step_run_id))
    if run_id is None:
        return None
    run = lock_run(session, run_id)
    step = session.scalars(
        select(StepRunRow)
        .where(*_owned(step_run_id, token))
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


def _remember(session: Session, run: PipelineRunRow, step: StepRunRow) -> None:
    """Keep the outputs under the step's cache key (replacing older ones under it)."""
    found = session.scalars(
        select(StepCacheRow).where(
            StepCacheRow.project_id == run.project_id, StepCacheRow.cache_key == step.cache_key
        )
    ).one_or_none()
    if found is not None:
        found.outputs = step.outputs or {}
        found.step_run_id = step.id
        return
    # Two runs may finish the same step at once: the second insert loses, which is fine.
    with contextlib.suppress(sa_exc.IntegrityError), session.begin_nested():
        session.add(
            StepCacheRow(
                project_id=run.project_id,
                cache_key=step.cache_key,
                uses=step.uses,
                outputs=step.outputs or {},
                step_run_id=step.id,
            )
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
    found = _locked(session, step_run_id, token)
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
        _remember(session, run, step)
    _event(session, run, step, "cached" if cached_from else "succeeded")
    advance(session, run, now)
    return True


def _delay_s(retry: dict[str, Any], failures: int) -> float:
    # The same rule as pipelines.spec.RetrySpec.delay_s (the store cannot import it).
    base = float(retry.get("backoff", 10.0))
    factor = float(retry.get("factor", 2.0))
    ceiling = float(retry.get("max_backoff", 600.0))
    return float(min(ceiling, base * factor ** max(0, failures - 1)))


def _settle_failure(
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
    if run.status == RunStatus.CANCELLING:
        step.status = StepStatus.CANCELLED.value
        step.finished_at = now
    elif retryable and step.failures <= step.max_retries:
        step.status = StepStatus.QUEUED.value
        step.next_attempt_at = now + timedelta(seconds=_delay_s(step.retry, step.failures))
        _event(session, run, step, "retrying", error=error.get("message", "")[:500])
    else:
        step.status = StepStatus.FAILED.value
        step.finished_at = now
        _event(session, run, step, "failed", error=error.get("message", "")[:500])
    advance(session, run, now)


def fail(
    session: Session, step_run_id: str, token: int, error: dict[str, Any], *, retryable: bool
) -> bool:
    """The attempt failed: requeue the step after its backoff while retries remain and the
    error is retryable, else fail it (its dependents are then skipped).

    Returns:
        ``False`` when the step is no longer this token's; nothing was written then.
    """
    found = _locked(session, step_run_id, token)
    if found is None:
        return False
    run, step = found
    _settle_failure(
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
    found = _locked(session, step_run_id, token)
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
    found = _locked(session, step_run_id, token)
    if found is None:
        return False
    run, step = found
    _end_attempt(session, step, AttemptStatus.RELEASED, now, None)
    _release_lease(step)
    if run.status == RunStatus.CANCELLING:
        step.status = StepStatus.CANCELLED.value
        step.finished_at = now
    else:
        step.status = StepStatus.QUEUED.value
        step.next_attempt_at = now
    advance(session, run, now)
    return True


def _lost_error(owner: str | None, expired_at: datetime | None) -> dict[str, Any]:
    when = expired_at.isoformat(timespec="seconds") if expired_at else "?"
    return {
        "type": "LeaseExpired",
        "code": None,
        "message": f"worker {owner or '?'} stopped renewing its lease (expired {when}): it "
        "crashed, was killed, or lost the database",
        "retryable": True,
        "origin": "platform",
        "traceback": None,
    }


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
        found = _locked(session, step_run_id, token)
        if found is None:
            continue
        run, step = found
        if step.lease_expires_at is None or step.lease_expires_at >= now:
            continue  # renewed between the two reads
        error = _lost_error(step.lease_owner, step.lease_expires_at)
        _settle_failure(
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


def cached_outputs(
    session: Session, project_id: str, cache_key: str
) -> tuple[dict[str, Any], str] | None:
    """The outputs kept under ``cache_key`` and the step run that made them, if any."""
    row = session.scalars(
        select(StepCacheRow).where(
            StepCacheRow.project_id == project_id, StepCacheRow.cache_key == cache_key
        )
    ).one_or_none()
    return None if row is None else (dict(row.outputs), row.step_run_id)


def forget(session: Session, project_id: str, cache_key: str) -> None:
    """Drop a cache entry whose outputs no longer exist (a deleted model version, ...)."""
    row = session.scalars(
        select(StepCacheRow).where(
            StepCacheRow.project_id == project_id, StepCacheRow.cache_key == cache_key
        )
    ).one_or_none()
    if row is not None:
        session.delete(row)
