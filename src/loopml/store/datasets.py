"""Datasets and their immutable versions (snapshots), with their events.

A version row is written last, after its Parquet files (``loopml.data.datasets``), in one
transaction with the dataset row (on the first version) and ``dataset.version.created``;
so no row ever names files that are not there. Versions never change, except that a split
can be frozen onto a version that has none, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from loopml.core.datasets import (
    MAX_DESCRIPTION,
    Dataset,
    DatasetProfile,
    DatasetSplit,
    DatasetVersion,
    DatasetVersionInfo,
    SourceTable,
    dataset_not_found,
    parse_version,
    split_conflict,
    validate_dataset_name,
    version_not_found,
)
from loopml.core.errors import ConflictError, NotFoundError, ValidationError
from loopml.core.lake import ColumnInfo
from loopml.core.types import Page
from loopml.store import events, projects
from loopml.store._checks import check_actor, check_limit, check_text
from loopml.store._errors import add_unique
from loopml.store.orm import DatasetRow, DatasetVersionRow

NAME_CURSOR_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
VERSION_CURSOR_PATTERN = re.compile(r"^[0-9]{1,9}$")


class StaleDatasetError(ConflictError):
    """The dataset was created, deleted or replaced by another writer while a version was
    being built for it; its files went under an id that is no longer the dataset's. The
    data layer removes them and builds again."""


@dataclass(frozen=True)
class VersionDraft:
    """A version to record: everything but its number, which the store assigns.

    ``id`` is chosen beforehand, because the version's files are written under it first.
    """

    id: str
    source: str
    query: str | None
    sources: list[SourceTable]
    row_count: int
    columns: list[ColumnInfo]
    content_hash: str
    profile: DatasetProfile
    data_key: str
    split: DatasetSplit | None


def _info(row: DatasetVersionRow) -> DatasetVersionInfo:
    split = row.split or None
    return DatasetVersionInfo(
        version=row.version,
        row_count=row.row_count,
        content_hash=row.content_hash,
        sources=[SourceTable.model_validate(s) for s in row.sources or []],
        eval_hash=split.get("eval_hash") if split else None,
        actor=row.actor,
        created_at=row.created_at,
    )


def _version(row: DatasetVersionRow, project: str, name: str) -> DatasetVersion:
    return DatasetVersion(
        id=row.id,
        project=project,
        dataset=name,
        version=row.version,
        source=row.source,
        query=row.query,
        sources=[SourceTable.model_validate(s) for s in row.sources or []],
        row_count=row.row_count,
        columns=[ColumnInfo.model_validate(c) for c in row.columns or []],
        content_hash=row.content_hash,
        profile=DatasetProfile.model_validate(row.profile),
        data_key=row.data_key,
        split=DatasetSplit.model_validate(row.split) if row.split else None,
        actor=row.actor,
        created_at=row.created_at,
    )


def _dataset(row: DatasetRow, project: str, latest: DatasetVersionRow | None) -> Dataset:
    return Dataset(
        id=row.id,
        project=project,
        name=row.name,
        description=row.description,
        latest_version=row.latest_version,
        latest=_info(latest) if latest is not None else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _find(session: Session, project_id: str, name: str, *, lock: bool = False) -> DatasetRow:
    query = select(DatasetRow).where(DatasetRow.project_id == project_id, DatasetRow.name == name)
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise dataset_not_found(name)
    return row


def _require(session: Session, project: str, name: str, *, lock: bool = False) -> DatasetRow:
    validate_dataset_name(name)
    return _find(session, projects.get(session, project).id, name, lock=lock)


def _version_row(session: Session, dataset: DatasetRow, version: int | None) -> DatasetVersionRow:
    number = dataset.latest_version if version is None else version
    query = select(DatasetVersionRow).where(
        DatasetVersionRow.dataset_id == dataset.id, DatasetVersionRow.version == number
    )
    row = session.scalars(query).one_or_none()
    if row is None:
        raise version_not_found(dataset.name, version)
    return row


def dataset_id(session: Session, project: str, name: str) -> str | None:
    """The id of dataset ``name``, or ``None`` when there is none yet.

    Raises:
        ValidationError: a bad name.
        NotFoundError: no such project.
    """
    validate_dataset_name(name)
    project_id = projects.get(session, project).id
    query = select(DatasetRow.id).where(
        DatasetRow.project_id == project_id, DatasetRow.name == name
    )
    return session.scalars(query).one_or_none()


def _same_split(latest: DatasetVersionRow, split: DatasetSplit | None) -> bool:
    if split is None:
        return True
    return latest.split is not None and latest.split.get("spec") == split.spec.model_dump()


def add_version(
    session: Session,
    project: str,
    name: str,
    draft: VersionDraft,
    *,
    dataset_id: str,
    description: str = "",
    actor: str,
) -> tuple[DatasetVersion, bool]:
    """Record a new version of dataset ``name`` (created on its first version, with id
    ``dataset_id``), and append ``dataset.version.created``.

    When the latest version already has the same content hash, and the same split spec
    (or no split was asked for), nothing is recorded and that version is returned.

    Returns:
        The version, and whether it was created by this call.

    Raises:
        ValidationError: a bad name, description or actor.
        NotFoundError: no such project.
        StaleDatasetError: the dataset ``name`` has another id than ``dataset_id`` (it was
            created or replaced concurrently): write the files again under the right id.
    """
    validate_dataset_name(name)
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    project_id = projects.get(session, project).id
    stale = StaleDatasetError(
        f"dataset {name!r} was changed by another writer meanwhile; retry",
        details={"dataset": name},
    )
    try:
        dataset = _find(session, project_id, name, lock=True)
    except NotFoundError:
        dataset = DatasetRow(
            id=dataset_id, project_id=project_id, name=name, description=description
        )
        dataset.latest_version = 0
        add_unique(session, dataset, stale)
        events.append(session, type="dataset.created", subject=name, project=project, actor=actor)
    if dataset.id != dataset_id:
        raise stale
    if dataset.latest_version:
        latest = _version_row(session, dataset, None)
        if latest.content_hash == draft.content_hash and _same_split(latest, draft.split):
            return _version(latest, project, name), False
    return _insert(session, project, dataset, draft, description, actor), True


def _insert(
    session: Session,
    project: str,
    dataset: DatasetRow,
    draft: VersionDraft,
    description: str,
    actor: str,
) -> DatasetVersion:
    number = dataset.latest_version + 1
    row = DatasetVersionRow(
        id=draft.id,
        dataset_id=dataset.id,
        project_id=dataset.project_id,
        version=number,
        source=draft.source,
        query=draft.query,
        sources=[s.model_dump() for s in draft.sources],
        row_count=draft.row_count,
        columns=[c.model_dump() for c in draft.columns],
        content_hash=draft.content_hash,
        profile=draft.profile.model_dump(mode="json"),
        data_key=draft.data_key,
        split=draft.split.model_dump(mode="json") if draft.split else None,
        actor=actor,
    )
    session.add(row)
    dataset.latest_version = number
    if description:
        dataset.description = description
    session.flush()
    payload: dict[str, Any] = {
        "version": number,
        "rows": draft.row_count,
        "content_hash": draft.content_hash,
        "sources": [s.model_dump() for s in draft.sources][:100],
    }
    if draft.split is not None:
        payload["eval_hash"] = draft.split.eval_hash
    events.append(
        session,
        type="dataset.version.created",
        subject=f"{dataset.name}@{number}",
        project=project,
        payload=payload,
        actor=actor,
    )
    return _version(row, project, dataset.name)


def get(session: Session, project: str, name: str) -> Dataset:
    """Dataset ``name`` with its latest version's summary; ``NotFoundError`` if absent."""
    dataset = _require(session, project, name)
    latest = _version_row(session, dataset, None) if dataset.latest_version else None
    return _dataset(dataset, project, latest)


def list_(
    session: Session, project: str, *, limit: int = 100, cursor: str | None = None
) -> Page[Dataset]:
    """A project's datasets by name, ``limit`` (1 to 1000) at a time; ``cursor`` is the
    ``next_cursor`` of the previous page.

    Raises:
        NotFoundError: no such project.
        ValidationError: a bad ``limit`` or ``cursor``.
    """
    check_limit(limit)
    project_id = projects.get(session, project).id
    query = (
        select(DatasetRow, DatasetVersionRow)
        .outerjoin(
            DatasetVersionRow,
            (DatasetVersionRow.dataset_id == DatasetRow.id)
            & (DatasetVersionRow.version == DatasetRow.latest_version),
        )
        .options(defer(DatasetVersionRow.profile), defer(DatasetVersionRow.query))
        .where(DatasetRow.project_id == project_id)
    )
    if cursor is not None:
        if not NAME_CURSOR_PATTERN.fullmatch(cursor):
            raise _bad_cursor(cursor)
        query = query.where(DatasetRow.name > cursor)
    found = list(session.execute(query.order_by(DatasetRow.name).limit(limit + 1)).tuples())
    items = [_dataset(dataset, project, latest) for dataset, latest in found[:limit]]
    next_cursor = items[-1].name if len(found) > limit else None
    return Page[Dataset](items=items, next_cursor=next_cursor)


def _bad_cursor(cursor: str) -> ValidationError:
    return ValidationError(
        f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
        details={"field": "cursor"},
    )


def list_versions(
    session: Session, project: str, name: str, *, limit: int = 100, cursor: str | None = None
) -> Page[DatasetVersionInfo]:
    """A dataset's versions, newest first, ``limit`` (1 to 1000) at a time.

    Raises:
        NotFoundError: no such project or dataset.
        ValidationError: a bad ``limit`` or ``cursor``.
    """
    check_limit(limit)
    dataset = _require(session, project, name)
    query = (
        select(DatasetVersionRow)
        .options(defer(DatasetVersionRow.profile), defer(DatasetVersionRow.query))
        .where(DatasetVersionRow.dataset_id == dataset.id)
    )
    if cursor is not None:
        if not VERSION_CURSOR_PATTERN.fullmatch(cursor):
            raise _bad_cursor(cursor)
        query = query.where(DatasetVersionRow.version < int(cursor))
    rows = list(session.scalars(query.order_by(DatasetVersionRow.version.desc()).limit(limit + 1)))
    items = [_info(row) for row in rows[:limit]]
    next_cursor = str(items[-1].version) if len(rows) > limit else None
    return Page[DatasetVersionInfo](items=items, next_cursor=next_cursor)


def get_version(
    session: Session, project: str, name: str, version: int | None = None
) -> DatasetVersion:
    """Version ``version`` of dataset ``name`` (the latest when ``None``), with its profile.

    Raises:
        NotFoundError: no such project, dataset or version.
    """
    if version is not None:
        parse_version(version)
    dataset = _require(session, project, name)
    return _version(_version_row(session, dataset, version), project, name)


def set_split(
    session: Session, project: str, name: str, version: int, split: DatasetSplit, *, actor: str
) -> tuple[DatasetVersion, bool]:
    """Freeze ``split`` onto a version and append ``dataset.version.split``.

    A version's split is set once: asking again with the same spec returns the version as
    it is (``False``); another spec is refused.

    Raises:
        NotFoundError: no such project, dataset or version.
        ConflictError: the version already has a split with another spec.
    """
    check_actor(actor)
    dataset = _require(session, project, name)
    number = parse_version(version)
    query = select(DatasetVersionRow).where(
        DatasetVersionRow.dataset_id == dataset.id, DatasetVersionRow.version == number
    )
    row = session.scalars(query.with_for_update()).one_or_none()
    if row is None:
        row = _version_row(session, dataset, number)  # raises the NotFoundError
    if row.split:
        frozen = DatasetSplit.model_validate(row.split)
        if frozen.spec == split.spec:
            return _version(row, project, name), False
        raise split_conflict(name, row.version, frozen)
    row.split = split.model_dump(mode="json")
    session.flush()
    events.append(
        session,
        type="dataset.version.split",
        subject=f"{name}@{row.version}",
        project=project,
        payload={
            **split.spec.model_dump(),
            "train_rows": split.train_rows,
            "eval_rows": split.eval_rows,
            "eval_hash": split.eval_hash,
        },
        actor=actor,
    )
    return _version(row, project, name), True


def delete(session: Session, project: str, name: str, *, actor: str) -> Dataset:
    """Delete a dataset with all its versions and append ``dataset.deleted``; returns what
    was deleted (its id names the folder of files the caller frees).

    Raises:
        NotFoundError: no such project or dataset.
    """
    check_actor(actor)
    dataset = _require(session, project, name, lock=True)
    deleted = _dataset(dataset, project, None)
    session.delete(dataset)
    session.flush()
    events.append(
        session,
        type="dataset.deleted",
        subject=name,
        project=project,
        payload={"versions": deleted.latest_version},
        actor=actor,
    )
    return deleted
