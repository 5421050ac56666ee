"""/api/v1/projects/{project}/datasets: immutable dataset snapshots and their splits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, ErrorBody, project_path
from loopml.api.schemas.datasets import (
    DatasetCreate,
    DatasetList,
    VersionList,
    dataset_path,
    version_path,
)
from loopml.core.datasets import (
    DATASET_NAME_PATTERN,
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
from loopml.data.datasets import PARQUET_MEDIA_TYPE
from loopml.faces.context import Actor, Ctx

PREFIX = "/api/v1/projects/{project}/datasets"
DETAIL_VERSIONS = 100
router = APIRouter(
    route_class=StrictJSONRoute, prefix=PREFIX, tags=["datasets"], responses=ERROR_RESPONSES
)
PROJECT = project_path("The project that owns the datasets.")
NAME = dataset_path()
VERSION = version_path()
CONTENT_HASH_HEADER = "X-Loopml-Content-Hash"
_CHUNK = 1024 * 1024

_MADE: dict[int | str, dict[str, Any]] = {
    200: {
        "model": DatasetVersionResult,
        "description": "Nothing new was made: the existing version is returned (`created` false).",
    },
    201: {"model": DatasetVersionResult, "description": "Made (`created` true)."},
    404: {"model": ErrorBody, "description": "No such project, table, version or dataset."},
    409: {
        "model": ErrorBody,
        "description": "The version already has a split with another spec (`conflict`).",
    },
    422: {
        "model": ErrorBody,
        "description": "A bad field, a refused or failing query (`validation_error`), a "
        "query past its time limit (`query_timeout`), or a split that cannot be made.",
    },
}
_PARQUET: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The Parquet file, verified against its content hash (in the "
        f"`{CONTENT_HASH_HEADER}` header).",
        "content": {PARQUET_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            CONTENT_HASH_HEADER: {
                "description": "The rows' content hash (SHA-256).",
                "schema": {"type": "string"},
            }
        },
    },
    409: {
        "model": ErrorBody,
        "description": "The stored file does not match its hash (`integrity_error`).",
    },
}


def _status(result: DatasetVersionResult, response: Response) -> DatasetVersionResult:
    response.status_code = 201 if result.created else 200
    return result


@router.post("", status_code=201, responses=_MADE)
def create_dataset_version(
    body: DatasetCreate, response: Response, ctx: Ctx, actor: Actor, project: str = PROJECT
) -> DatasetVersionResult:
    """Snapshot a table (version) or one SELECT as the dataset's next version.

    The rows are put in a canonical order and hashed; each column is profiled. When the
    latest version holds the same rows (and, if asked for, the same split), it is returned
    with 200 and `created` false instead of a copy.
    """
    validate_project_name(project)
    made = datasets.create_version(
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
    return _status(made, response)


@router.get("")
def list_datasets(
    ctx: Ctx,
    project: str = PROJECT,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(
        default=None,
        max_length=63,
        description="The next_cursor of the previous page.",
        json_schema_extra={"pattern": DATASET_NAME_PATTERN.pattern},
    ),
) -> DatasetList:
    """A project's datasets by name, each with its latest version's summary."""
    page = datasets.list_datasets(ctx.store, project, limit=limit, cursor=cursor)
    return DatasetList(items=page.items, next_cursor=page.next_cursor)


# The get, delete and list routes below are alike in shape to a table's contract and reports
# routes (routes/tables.py), not in logic: each is one documented operation into its own
# service, and a version cursor is checked by the store (whose message says what to pass)
# where a report cursor's pattern is checked by its route first.
@router.get("/{name}")
def get_dataset(ctx: Ctx, project: str = PROJECT, name: str = NAME) -> DatasetDetail:
    """A dataset with its newest 100 versions (the rest through `/versions`)."""
    found = datasets.get_dataset(ctx.store, project, name)
    page = datasets.list_versions(ctx.store, project, name, limit=DETAIL_VERSIONS)
    return DatasetDetail(**found.model_dump(), versions=page.items, next_cursor=page.next_cursor)


@router.delete("/{name}", status_code=204)
def delete_dataset(ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME) -> Response:
    """Delete a dataset, all its versions and their files."""
    datasets.delete_dataset(ctx.store, ctx.artifacts, project, name, actor=actor)
    return Response(status_code=204)


@router.get("/{name}/versions")
def list_versions(
    ctx: Ctx,
    project: str = PROJECT,
    name: str = NAME,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(
        default=None,
        max_length=9,
        description="The next_cursor of the previous page.",
        json_schema_extra={"pattern": r"^[0-9]{1,9}$"},
    ),
) -> VersionList:
    """A dataset's versions, newest first."""
    page = datasets.list_versions(ctx.store, project, name, limit=limit, cursor=cursor)
    return VersionList(items=page.items, next_cursor=page.next_cursor)


@router.get("/{name}/versions/{version}")
def get_version(
    ctx: Ctx, project: str = PROJECT, name: str = NAME, version: str = VERSION
) -> DatasetVersion:
    """One version: its sources, query, hash, column profile and split."""
    return datasets.get_version(ctx.store, project, _ref(name, version))


@router.post("/{name}/versions/{version}/split", status_code=201, responses=_MADE)
def split_version(
    spec: SplitSpec,
    response: Response,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    name: str = NAME,
    version: str = VERSION,
) -> DatasetVersionResult:
    """Freeze a train/eval split onto a version (seeded, optionally stratified).

    A version's split never changes: the same spec again answers 200 with the version as
    it is; another spec is refused with 409 (make a new version instead).
    """
    made = datasets.split_version(
        ctx.store, ctx.artifacts, project, _ref(name, version), spec, actor=actor
    )
    return _status(made, response)


def _ref(name: str, version: str) -> DatasetRef:
    return DatasetRef(name=validate_dataset_name(name), version=parse_version(version))


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), _CHUNK):
        yield data[start : start + _CHUNK]


@router.get("/{name}/versions/{version}/data", response_class=StreamingResponse, responses=_PARQUET)
def download_version(
    ctx: Ctx,
    project: str = PROJECT,
    name: str = NAME,
    version: str = VERSION,
    part: Part = Query(default="all", description="all, or a part of its split: train, eval."),
) -> StreamingResponse:
    """The version's rows (or a split part's) as a Parquet file, verified before it is sent."""
    found, data, digest = datasets.read_version_file(
        ctx.store, ctx.artifacts, project, _ref(name, version), part
    )
    filename = f"{found.dataset}-v{found.version}" + ("" if part == "all" else f"-{part}")
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}.parquet"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Length": str(len(data)),
        CONTENT_HASH_HEADER: digest,
    }
    return StreamingResponse(_chunks(data), media_type=PARQUET_MEDIA_TYPE, headers=headers)
