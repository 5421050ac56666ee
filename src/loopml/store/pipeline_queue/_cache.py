"""The step cache: outputs kept under a step's cache key, reused by an identical step."""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.store.orm import PipelineRunRow, StepCacheRow, StepRunRow


def remember(session: Session, run: PipelineRunRow, step: StepRunRow) -> None:
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
