"""Pipelines in the metadata DB: a pipeline and its applied versions.

The spec is parsed and checked above the store (``loopml.pipelines``); here a version is
stored with its normalized ``definition`` (what workers run). Runs of a version are
``store.pipeline_runs``; the queue their steps go through (claims, leases, fencing) is
``store.pipeline_queue``. Every change appends its event in the same transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.errors import ConflictError, NotFoundError
from loopml.core.pipelines import (
    Pipeline,
    PipelineApplied,
    PipelineVersion,
    pipeline_not_found,
    validate_pipeline_name,
)
from loopml.store import events
from loopml.store._checks import check_actor
from loopml.store._errors import add_unique
from loopml.store.orm import PipelineRow, PipelineVersionRow
from loopml.store.project_lookup import project_row


def _pipeline(row: PipelineRow, project: str) -> Pipeline:
    return Pipeline(
        id=row.id,
        project=project,
        name=row.name,
        description=row.description,
        latest_version=row.latest_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _version(row: PipelineVersionRow, name: str) -> PipelineVersion:
    return PipelineVersion(
        pipeline=name,
        version=row.version,
        spec_hash=row.spec_hash,
        spec=row.spec_text,
        steps=list(row.definition.get("order", [])),
        actor=row.actor,
        created_at=row.created_at,
    )


def _find(
    session: Session, project_id: str, name: str, *, lock: bool = False
) -> PipelineRow | None:
    query = select(PipelineRow).where(
        PipelineRow.project_id == project_id, PipelineRow.name == name
    )
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def require(session: Session, project: str, name: str) -> tuple[PipelineRow, str]:
    """A project's pipeline row and the project's id; ``NotFoundError`` when absent."""
    validate_pipeline_name(name)
    project_id = project_row(session, project).id
    row = _find(session, project_id, name)
    if row is None:
        raise pipeline_not_found(project, name)
    return row, project_id


def _version_row(session: Session, pipeline_id: str, version: int) -> PipelineVersionRow:
    found = session.scalars(
        select(PipelineVersionRow).where(
            PipelineVersionRow.pipeline_id == pipeline_id, PipelineVersionRow.version == version
        )
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"pipeline version {version} not found", details={"version": version})
    return found


def apply(
    session: Session,
    project: str,
    *,
    name: str,
    description: str,
    spec_text: str,
    spec_hash: str,
    definition: dict[str, Any],
    actor: str,
) -> PipelineApplied:
    """Store a checked spec as the pipeline's next version (the pipeline is created if new).

    A spec whose normalized hash equals the newest version's is not stored again: that
    version is returned with ``created`` false. Emits ``pipeline.applied`` for a new version.

    Raises:
        ValidationError: a bad name or actor.
        NotFoundError: no such project.
    """
    validate_pipeline_name(name)
    check_actor(actor)
    project_id = project_row(session, project).id
    row = _find(session, project_id, name, lock=True)
    if row is not None:
        latest = _version_row(session, row.id, row.latest_version)
        if latest.spec_hash == spec_hash:
            return PipelineApplied(
                pipeline=_pipeline(row, project), version=_version(latest, name), created=False
            )
        row.latest_version += 1
        row.description = description
        row.actor = actor
    else:
        row = PipelineRow(
            project_id=project_id,
            name=name,
            description=description,
            latest_version=1,
            actor=actor,
        )
        exists = ConflictError(
            f"pipeline {name!r} was applied concurrently; apply again",
            details={"pipeline": name},
        )
        add_unique(session, row, exists)
    version = PipelineVersionRow(
        pipeline_id=row.id,
        version=row.latest_version,
        spec_hash=spec_hash,
        spec_text=spec_text,
        definition=definition,
        actor=actor,
    )
    session.add(version)
    session.flush()
    events.append(
        session,
        type="pipeline.applied",
        subject=name,
        project=project,
        payload={"pipeline": name, "version": version.version, "spec_hash": spec_hash},
        actor=actor,
    )
    return PipelineApplied(
        pipeline=_pipeline(row, project), version=_version(version, name), created=True
    )


def get(session: Session, project: str, name: str) -> Pipeline:
    """The pipeline ``name``; ``NotFoundError`` when it or the project is missing."""
    row, _ = require(session, project, name)
    return _pipeline(row, project)


def list_(session: Session, project: str) -> list[Pipeline]:
    """A project's pipelines, by name."""
    project_id = project_row(session, project).id
    rows = session.scalars(
        select(PipelineRow).where(PipelineRow.project_id == project_id).order_by(PipelineRow.name)
    )
    return [_pipeline(row, project) for row in rows]


def get_version(
    session: Session, project: str, name: str, version: int | None = None
) -> tuple[PipelineVersion, dict[str, Any], str]:
    """A version of the pipeline (the newest when ``None``), its definition and its row id.

    Raises:
        NotFoundError: no such project, pipeline or version.
    """
    row, _ = require(session, project, name)
    number = row.latest_version if version is None else version
    try:
        found = _version_row(session, row.id, number)
    except NotFoundError:
        raise NotFoundError(
            f"pipeline {name!r} has no version {number} (newest: {row.latest_version})",
            details={"pipeline": name, "version": number},
        ) from None
    return _version(found, name), found.definition, found.id
