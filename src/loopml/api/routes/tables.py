"""/api/v1/projects/{project}/tables: lake tables and file ingest."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response

from loopml.api.context import Actor, Ctx
from loopml.api.schemas import ERROR_RESPONSES, project_path
from loopml.api.schemas_data import (
    ReportPage,
    TableCreate,
    TableHead,
    TableHistory,
    TableList,
    table_path,
)
from loopml.api.services import tables
from loopml.core.contracts import Contract
from loopml.core.housekeeping import MAX_RETENTION_HOURS, CompactReport, VacuumReport
from loopml.core.lake import LakeTable, TableCommit

PREFIX = "/api/v1/projects/{project}/tables"
router = APIRouter(prefix=PREFIX, tags=["tables"], responses=ERROR_RESPONSES)
PROJECT = project_path("The project that owns the tables.")
TABLE = table_path()
_RAW_BODY: dict[str, Any] = {
    "requestBody": {
        "description": "The file's bytes: CSV, Parquet or JSON Lines.",
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def is_files_path(path: str) -> bool:
    """Whether ``path`` is ``/api/v1/projects/{p}/tables/{t}/files`` (a raw-body upload)."""
    parts = path.split("/")
    return (
        len(parts) == 8
        and parts[1:4] == ["api", "v1", "projects"]
        and parts[5] == "tables"
        and parts[7] == "files"
    )


@router.get("")
def list_tables(ctx: Ctx, project: str = PROJECT) -> TableList:
    """A project's tables, by name."""
    return TableList(items=tables.list_(ctx, project))


@router.post("", status_code=201)
def create_table(body: TableCreate, ctx: Ctx, actor: Actor, project: str = PROJECT) -> LakeTable:
    """Create a table; with ``columns`` it starts empty at version 0 with that schema."""
    return tables.create(ctx, project, body.name, body.description, body.column_infos(), actor)


@router.get("/{table}")
def get_table(ctx: Ctx, project: str = PROJECT, table: str = TABLE) -> LakeTable:
    """A table: its version, row count and columns."""
    return tables.get(ctx, project, table)


@router.delete("/{table}", status_code=204)
def delete_table(ctx: Ctx, actor: Actor, project: str = PROJECT, table: str = TABLE) -> Response:
    """Delete a table and its data."""
    tables.delete(ctx, project, table, actor)
    return Response(status_code=204)


@router.get("/{table}/history")
def table_history(
    ctx: Ctx,
    project: str = PROJECT,
    table: str = TABLE,
    limit: int = Query(default=100, ge=1, le=1000),
) -> TableHistory:
    """A table's commits, newest first."""
    return TableHistory(items=tables.history(ctx, project, table, limit))


@router.get("/{table}/head")
def table_head(
    ctx: Ctx,
    project: str = PROJECT,
    table: str = TABLE,
    n: int = Query(default=10, ge=0, le=1000),
) -> TableHead:
    """The first ``n`` rows of the latest version."""
    return tables.head(ctx, project, table, n)


@router.put("/{table}/contract")
def set_contract(
    body: Contract, ctx: Ctx, actor: Actor, project: str = PROJECT, table: str = TABLE
) -> Contract:
    """Replace the table's validation contract, checked on every append from now on.

    Regexes must compile in RE2; a ``quarantine`` contract needs ``<table>__rejected`` to
    be a valid table name (at most 63 characters).
    """
    return tables.set_contract(ctx, project, table, body, actor)


@router.get("/{table}/contract")
def get_contract(ctx: Ctx, project: str = PROJECT, table: str = TABLE) -> Contract:
    """The table's validation contract (404 when it has none)."""
    return tables.get_contract(ctx, project, table)


@router.delete("/{table}/contract", status_code=204)
def delete_contract(ctx: Ctx, actor: Actor, project: str = PROJECT, table: str = TABLE) -> Response:
    """Drop the table's validation contract: appends are no longer checked."""
    tables.delete_contract(ctx, project, table, actor)
    return Response(status_code=204)


@router.get("/{table}/reports")
def list_reports(
    ctx: Ctx,
    project: str = PROJECT,
    table: str = TABLE,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(
        default=None,
        max_length=50,
        pattern=r"^[0-9]{1,17}-[0-9a-f]{32}$",
        description="The next_cursor of the previous page.",
    ),
) -> ReportPage:
    """The table's validation reports (one per checked batch), newest first."""
    return tables.reports(ctx, project, table, limit, cursor)


@router.post("/{table}/files", status_code=201, openapi_extra=_RAW_BODY)
async def ingest_file(
    request: Request,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    table: str = TABLE,
    format: Literal["csv", "parquet", "jsonl"] | None = Query(
        default=None, description="The file's format; by default from its name or content."
    ),
    mode: Literal["append", "overwrite"] = Query(default="append"),
    content_disposition: str | None = Header(default=None, max_length=1000),
) -> TableCommit:
    """Ingest the raw request body (a CSV, Parquet or JSON Lines file) as one commit.

    The first file creates the table and fixes its schema; later ones must match it after
    safe casts, or are refused with 422 naming the columns and first offending rows.
    """
    return await tables.ingest_upload(
        ctx,
        project,
        table,
        request.stream(),
        format=format,
        mode=mode,
        filename=tables.filename_of(content_disposition),
        content_type=request.headers.get("content-type"),
        actor=actor,
    )


@router.post("/{table}/compact")
def compact_table(
    ctx: Ctx, actor: Actor, project: str = PROJECT, table: str = TABLE
) -> CompactReport:
    """Rewrite the table's small files into large ones, as a new version with the same rows."""
    return tables.compact(ctx, project, table, actor)


@router.post("/{table}/vacuum")
def vacuum_table(
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    table: str = TABLE,
    retention_hours: int | None = Query(
        default=None,
        ge=0,
        le=MAX_RETENTION_HOURS,
        description="Free files that left the table longer ago than this; by default "
        "`lake.vacuum_retention_hours`. Versions that a run references keep their files.",
    ),
    dry_run: bool = Query(default=False, description="Report what would be freed; free nothing."),
) -> VacuumReport:
    """Free the storage of old versions beyond the retention, except referenced versions."""
    return tables.vacuum(ctx, project, table, retention_hours, dry_run, actor)
