"""Lookups and row conversion shared by the registry repositories (models, versions, lineage).

Converters load tags and aliases for a whole list of rows in one query each, so a page of
models or versions costs a fixed number of queries, never one per row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.refs import validate_model_name, validate_version_number
from loopml.core.registry import MAX_TAGS, ModelVersion, RegisteredModel, VersionStatus
from loopml.store.orm import (
    ModelAliasRow,
    ModelTagRow,
    ModelVersionRow,
    ModelVersionTagRow,
    ProjectRow,
    RegisteredModelRow,
)
from loopml.store.project_lookup import project_row

# Bound on the ids in one ``IN (...)``: SQLite allows 32766 parameters, PostgreSQL 65535.
_IN_CHUNK = 500
T = TypeVar("T")

VersionRecord = tuple[ModelVersionRow, str, str]
"""A version row with its model's name and its project's name."""


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in slices small enough for one ``IN (...)``."""
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def model_row(
    session: Session, project: str, name: str, *, lock: bool = False
) -> RegisteredModelRow:
    """The registered model ``name`` of ``project``; ``NotFoundError`` naming what is missing.

    With ``lock``, the row is locked until the transaction ends (``FOR UPDATE`` on
    PostgreSQL; SQLite transactions already hold the write lock), which serializes version
    numbering and alias moves of one model.
    """
    validate_model_name(name)
    proj = project_row(session, project)
    query = select(RegisteredModelRow).where(
        RegisteredModelRow.project_id == proj.id, RegisteredModelRow.name == name
    )
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise NotFoundError(
            f"model {name!r} not found in project {project!r}",
            details={"project": project, "model": name},
        )
    return row


def version_row(
    session: Session, project: str, model: RegisteredModelRow, version: int
) -> ModelVersionRow:
    """Version ``version`` of ``model``; ``NotFoundError`` naming the model and number."""
    validate_version_number(version)
    row = session.scalars(
        select(ModelVersionRow).where(
            ModelVersionRow.model_id == model.id, ModelVersionRow.version == version
        )
    ).one_or_none()
    if row is None:
        raise NotFoundError(
            f"version {version} of model {model.name!r} not found in project {project!r}",
            details={"project": project, "model": model.name, "version": version},
        )
    return row


def versions_query() -> Select[tuple[ModelVersionRow, str, str]]:
    """Versions joined with their model's and project's names (see ``VersionRecord``)."""
    return (
        select(ModelVersionRow, RegisteredModelRow.name, ProjectRow.name)
        .join(RegisteredModelRow, ModelVersionRow.model_id == RegisteredModelRow.id)
        .join(ProjectRow, RegisteredModelRow.project_id == ProjectRow.id)
    )


def check_tag_room(session: Session, table: Any, column: Any, owner_id: str, key: str) -> None:
    """Refuse a new tag key once the owner has ``MAX_TAGS`` tags (RELIABILITY 17)."""
    exists = session.get(table, (owner_id, key)) is not None
    if exists:
        return
    count = session.scalar(select(func.count()).select_from(table).where(column == owner_id))
    if (count or 0) >= MAX_TAGS:
        raise ValidationError(
            f"too many tags: at most {MAX_TAGS} per model or version; delete some first",
            details={"field": "tags", "max_items": MAX_TAGS},
        )


def models_to_domain(
    session: Session, project: str, rows: Sequence[RegisteredModelRow]
) -> list[RegisteredModel]:
    """Convert model rows, loading their tags, aliases and newest version in 3 queries."""
    ids = [row.id for row in rows]
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    aliases: dict[str, dict[str, int]] = defaultdict(dict)
    latest: dict[str, int] = {}
    for part in chunks(ids):
        for tag in session.scalars(select(ModelTagRow).where(ModelTagRow.model_id.in_(part))):
            tags[tag.model_id][tag.key] = tag.value
        alias_rows = session.execute(
            select(ModelAliasRow.model_id, ModelAliasRow.alias, ModelVersionRow.version)
            .join(ModelVersionRow, ModelAliasRow.version_id == ModelVersionRow.id)
            .where(ModelAliasRow.model_id.in_(part))
        )
        for model_id, alias, number in alias_rows:
            aliases[model_id][alias] = number
        maxima = session.execute(
            select(ModelVersionRow.model_id, func.max(ModelVersionRow.version))
            .where(ModelVersionRow.model_id.in_(part))
            .group_by(ModelVersionRow.model_id)
        )
        latest.update(maxima.tuples().all())
    return [
        RegisteredModel(
            id=row.id,
            project=project,
            name=row.name,
            description=row.description,
            tags=dict(sorted(tags[row.id].items())),
            aliases=dict(sorted(aliases[row.id].items())),
            latest_version=latest.get(row.id),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


def versions_to_domain(session: Session, records: Sequence[VersionRecord]) -> list[ModelVersion]:
    """Convert version rows, loading their tags and aliases in 2 queries."""
    ids = [row.id for row, _, _ in records]
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    aliases: dict[str, list[str]] = defaultdict(list)
    for part in chunks(ids):
        query = select(ModelVersionTagRow).where(ModelVersionTagRow.version_id.in_(part))
        for tag in session.scalars(query):
            tags[tag.version_id][tag.key] = tag.value
        alias_query = select(ModelAliasRow).where(ModelAliasRow.version_id.in_(part))
        for alias in session.scalars(alias_query):
            aliases[alias.version_id].append(alias.alias)
    return [
        ModelVersion(
            id=row.id,
            project=project,
            model=model,
            version=row.version,
            run_id=row.run_id,
            logged_model_id=row.logged_model_id,
            manifest_sha256=row.manifest_sha256,
            status=VersionStatus(row.status),
            status_message=row.status_message,
            description=row.description,
            tags=dict(sorted(tags[row.id].items())),
            aliases=sorted(aliases[row.id]),
            actor=row.actor,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row, model, project in records
    ]


def version_to_domain(
    session: Session, row: ModelVersionRow, model: str, project: str
) -> ModelVersion:
    """Convert one version row (see ``versions_to_domain``)."""
    return versions_to_domain(session, [(row, model, project)])[0]
