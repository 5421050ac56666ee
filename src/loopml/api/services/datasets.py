"""Dataset snapshots for the API: the data layer, called from worker threads."""

from __future__ import annotations

from loopml.api.schemas.datasets import DatasetCreate, DatasetList, VersionList
from loopml.core.datasets import (
    DatasetDetail,
    DatasetRef,
    DatasetVersion,
    DatasetVersionResult,
    Part,
    SplitSpec,
    parse_version,
    validate_dataset_name,
)
from loopml.core.names import validate_project_name
from loopml.data import datasets
from loopml.web.context import AppContext

DETAIL_VERSIONS = 100


def _ref(name: str, version: str) -> DatasetRef:
    return DatasetRef(name=validate_dataset_name(name), version=parse_version(version))


def create(ctx: AppContext, project: str, body: DatasetCreate, actor: str) -> DatasetVersionResult:
    """Snapshot ``body.source`` as the next version of ``body.name``."""
    validate_project_name(project)
    return datasets.create_version(
        ctx.store,
        ctx.artifacts,
        project,
        body.name,
        body.source,
        description=body.description,
        split=body.split,
        actor=actor,
        timeout_s=body.timeout_s,
    )


def list_(ctx: AppContext, project: str, limit: int, cursor: str | None) -> DatasetList:
    """One page of a project's datasets."""
    page = datasets.list_datasets(ctx.store, project, limit=limit, cursor=cursor)
    return DatasetList(items=page.items, next_cursor=page.next_cursor)


def get(ctx: AppContext, project: str, name: str) -> DatasetDetail:
    """A dataset with its newest versions."""
    found = datasets.get_dataset(ctx.store, project, name)
    page = datasets.list_versions(ctx.store, project, name, limit=DETAIL_VERSIONS)
    return DatasetDetail(**found.model_dump(), versions=page.items, next_cursor=page.next_cursor)


def versions(
    ctx: AppContext, project: str, name: str, limit: int, cursor: str | None
) -> VersionList:
    """One page of a dataset's versions, newest first."""
    page = datasets.list_versions(ctx.store, project, name, limit=limit, cursor=cursor)
    return VersionList(items=page.items, next_cursor=page.next_cursor)


def version(ctx: AppContext, project: str, name: str, number: str) -> DatasetVersion:
    """One version with its profile and split."""
    return datasets.get_version(ctx.store, project, _ref(name, number))


def split(
    ctx: AppContext, project: str, name: str, number: str, spec: SplitSpec, actor: str
) -> DatasetVersionResult:
    """Freeze a train/eval split onto a version."""
    return datasets.split_version(
        ctx.store, ctx.artifacts, project, _ref(name, number), spec, actor=actor
    )


def data(
    ctx: AppContext, project: str, name: str, number: str, part: Part
) -> tuple[DatasetVersion, bytes, str]:
    """A version's (or part's) Parquet file, verified against its hash."""
    return datasets.read_version_file(ctx.store, ctx.artifacts, project, _ref(name, number), part)


def delete(ctx: AppContext, project: str, name: str, actor: str) -> None:
    """Delete a dataset, its versions and their files."""
    datasets.delete_dataset(ctx.store, ctx.artifacts, project, name, actor=actor)
