"""The end of runs: deleting them (with their child runs) and marking LOST those whose
heartbeat stopped. Artifacts are the caller's to free, with the ids returned here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.errors import ConflictError
from loopml.store import events, runs
from loopml.store._checks import check_actor
from loopml.store.orm import ModelVersionRow, ProjectRow, RegisteredModelRow, RunRow


def _with_descendants(session: Session, run_id: str) -> list[str]:
    found, frontier = [run_id], [run_id]
    while frontier:
        frontier = list(
            session.scalars(select(RunRow.id).where(RunRow.parent_run_id.in_(frontier)))
        )
        found.extend(frontier)
    return found


def _refuse_if_registered(session: Session, run_ids: Iterable[str]) -> None:
    used = session.execute(
        select(ModelVersionRow.run_id, RegisteredModelRow.name, ModelVersionRow.version)
        .join(RegisteredModelRow, RegisteredModelRow.id == ModelVersionRow.model_id)
        .where(ModelVersionRow.run_id.in_(list(run_ids)))
        .limit(1)
    ).first()
    if used is not None:
        raise ConflictError(
            f"run {used[0]} is used by model version {used[1]} v{used[2]}; delete the version "
            "first",
            details={"run_id": used[0], "model": used[1], "version": used[2]},
        )


def delete_run(session: Session, project: str, run_id: str, *, actor: str) -> list[str]:
    """Delete a run, its child runs and everything they logged; append ``run.deleted``.

    Returns:
        The ids of every deleted run, so the caller can free their artifacts.

    Raises:
        NotFoundError: no such run in the project.
        ConflictError: a model version was registered from one of these runs.
    """
    check_actor(actor)
    runs.require(session, project, run_id)
    ids = _with_descendants(session, run_id)
    _refuse_if_registered(session, ids)
    session.execute(
        delete(RunRow).where(RunRow.id.in_(ids)).execution_options(synchronize_session=False)
    )
    payload = {"run_ids": ids[:1000]}
    events.append(
        session, type="run.deleted", subject=run_id, project=project, payload=payload, actor=actor
    )
    return ids


def sweep_lost(session: Session, *, now: datetime | None = None, actor: str) -> list[str]:
    """Mark LOST every RUNNING run whose heartbeat is older than its timeout.

    A heartbeat that lands while sweeping wins: a run is only marked when its heartbeat is
    still the stale one that was read. The run's end time is its last heartbeat.

    Returns:
        The ids of the runs marked LOST.
    """
    now = now or utcnow()
    running = session.execute(
        select(RunRow.id, RunRow.heartbeat_at, RunRow.heartbeat_timeout_s, ProjectRow.name)
        .join(ProjectRow, ProjectRow.id == RunRow.project_id)
        .where(RunRow.status == "RUNNING", RunRow.heartbeat_at < now - timedelta(seconds=1))
    ).all()
    lost: list[str] = []
    for run_id, beat, timeout_s, project in running:
        if beat + timedelta(seconds=timeout_s) >= now:
            continue
        result = session.execute(
            update(RunRow)
            .where(RunRow.id == run_id, RunRow.status == "RUNNING", RunRow.heartbeat_at == beat)
            .values(status="LOST", end_time=beat)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            lost.append(run_id)
            payload = {"last_heartbeat": beat.isoformat()}
            events.append(
                session,
                type="run.lost",
                subject=run_id,
                project=project,
                payload=payload,
                actor=actor,
            )
    return lost
