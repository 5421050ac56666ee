"""/api/v1/projects/{project}/tables: lake tables, file ingest and record ingest."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Annotated, Any, Literal

import anyio.lowlevel
import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import Field

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.api.schemas.data import (
    ReportPage,
    TableCreate,
    TableHead,
    TableHistory,
    TableList,
    table_path,
)
from loopml.core.contracts import Contract
from loopml.core.errors import ServiceUnavailableError
from loopml.core.housekeeping import MAX_RETENTION_HOURS, CompactReport, VacuumReport
from loopml.core.ingest import (
    IDEMPOTENCY_KEY_PATTERN,
    JSON_MEDIA_TYPE,
    NDJSON_MEDIA_TYPES,
    RecordsCommit,
    validate_idempotency_key,
)
from loopml.core.lake import (
    COLUMN_DECLARATION_PATTERN,
    LakeTable,
    TableCommit,
    parse_declarations,
    validate_table_name,
    validate_write_mode,
)
from loopml.core.names import validate_project_name
from loopml.data import files, housekeeping, keyed_files, lake, records, validation
from loopml.faces.context import Actor, AppContext, Ctx, freeing_space, get_running
from loopml.faces.streaming import pulled_pieces
from loopml.storage.native import NativeLocation

PREFIX = "/api/v1/projects/{project}/tables"
router = APIRouter(
    route_class=StrictJSONRoute, prefix=PREFIX, tags=["tables"], responses=ERROR_RESPONSES
)
PROJECT = project_path("The project that owns the tables.")
# The pattern is declared for the API's document; `parse_declarations` checks it with a message
# that says what was wrong (an unknown type, a missing ':').
DeclaredColumn = Annotated[
    str, Field(max_length=320, json_schema_extra={"pattern": COLUMN_DECLARATION_PATTERN})
]
TABLE = table_path()
_RAW_BODY: dict[str, Any] = {
    "requestBody": {
        "description": "The file's bytes: CSV, Parquet or JSON Lines.",
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}

_NDJSON_SCHEMA: dict[str, Any] = {
    "schema": {"type": "string", "description": "One JSON object per line."}
}
_RECORDS_BODY: dict[str, Any] = {
    "requestBody": {
        "description": "The records: a JSON array of objects, or one JSON object per line.",
        "required": True,
        "content": {
            JSON_MEDIA_TYPE: {
                "schema": {"type": "array", "minItems": 1, "items": {"type": "object"}}
            },
            **dict.fromkeys(NDJSON_MEDIA_TYPES, _NDJSON_SCHEMA),
        },
    }
}
_REPLAYED: dict[int | str, dict[str, Any]] = {
    200: {
        "model": RecordsCommit,
        "description": "A retry of a post that already landed (same Idempotency-Key and "
        "body): nothing was appended; the body repeats where the records are.",
        "headers": {
            "Idempotent-Replayed": {
                "description": "`true`: this answers an earlier post.",
                "schema": {"type": "string"},
            }
        },
    }
}
_FILE_REPLAYED: dict[int | str, dict[str, Any]] = {
    200: {
        "model": TableCommit,
        "description": "A retry of an upload that already landed (same Idempotency-Key and "
        "options): nothing was written; the body is the commit that holds it (`replayed`).",
        "headers": _REPLAYED[200]["headers"],
    }
}
_FILENAME = re.compile(r"""filename\*?=(?:UTF-8'')?"?([^";]{1,255})""", re.IGNORECASE)


def _table_path_tail(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) == 8 and parts[1:4] == ["api", "v1", "projects"] and parts[5] == "tables":
        return parts[7]
    return None


def is_records_path(path: str) -> bool:
    """Whether ``path`` is ``/api/v1/projects/{p}/tables/{t}/records`` (JSON or NDJSON)."""
    return _table_path_tail(path) == "records"


def is_files_path(path: str) -> bool:
    """Whether ``path`` is ``/api/v1/projects/{p}/tables/{t}/files`` (a raw-body upload)."""
    return _table_path_tail(path) == "files"


@router.get("")
def list_tables(ctx: Ctx, project: str = PROJECT) -> TableList:
    """A project's tables, by name."""
    return TableList(items=lake.list_tables(ctx.store, project))


@router.post("", status_code=201)
def create_table(body: TableCreate, ctx: Ctx, actor: Actor, project: str = PROJECT) -> LakeTable:
    """Create a table; with ``columns`` it starts empty at version 0 with that schema."""
    return lake.create_table(
        ctx.store,
        ctx.artifacts,
        project,
        body.name,
        columns=body.column_infos(),
        description=body.description,
        actor=actor,
    )


@router.get("/{table}")
def get_table(ctx: Ctx, project: str = PROJECT, table: str = TABLE) -> LakeTable:
    """A table: its version, row count and columns."""
    return lake.get_table(ctx.store, ctx.artifacts, project, table)


@router.delete("/{table}", status_code=204)
def delete_table(
    request: Request, ctx: Ctx, actor: Actor, project: str = PROJECT, table: str = TABLE
) -> Response:
    """Delete a table and its data (on a full disk too: the disk's reserve is released)."""
    with freeing_space(request, "a table delete"):
        lake.delete_table(ctx.store, ctx.artifacts, project, table, actor=actor)
    return Response(status_code=204)


@router.get("/{table}/history")
def table_history(
    ctx: Ctx,
    project: str = PROJECT,
    table: str = TABLE,
    limit: int = Query(default=100, ge=1, le=1000),
) -> TableHistory:
    """A table's commits, newest first."""
    return TableHistory(items=lake.history(ctx.store, ctx.artifacts, project, table, limit))


@router.get("/{table}/head")
def table_head(
    ctx: Ctx,
    project: str = PROJECT,
    table: str = TABLE,
    n: int = Query(default=10, ge=0, le=1000),
) -> TableHead:
    """The first ``n`` rows of the latest version."""
    columns, rows = lake.head_json(ctx.store, ctx.artifacts, project, table, n)
    return TableHead(columns=columns, rows=rows)


@router.put("/{table}/contract")
def set_contract(
    body: Contract, ctx: Ctx, actor: Actor, project: str = PROJECT, table: str = TABLE
) -> Contract:
    """Replace the table's validation contract, checked on every append from now on.

    Regexes must compile in RE2; a ``quarantine`` contract needs ``<table>__rejected`` to
    be a valid table name (at most 63 characters).
    """
    return validation.set_contract(ctx.store, project, table, body, actor=actor)


# Alike in shape to a dataset's get, delete and versions routes (routes/datasets.py), kept
# apart for the reasons given there.
@router.get("/{table}/contract")
def get_contract(ctx: Ctx, project: str = PROJECT, table: str = TABLE) -> Contract:
    """The table's validation contract (404 when it has none)."""
    return validation.get_contract(ctx.store, project, table)


@router.delete("/{table}/contract", status_code=204)
def delete_contract(ctx: Ctx, actor: Actor, project: str = PROJECT, table: str = TABLE) -> Response:
    """Drop the table's validation contract: appends are no longer checked."""
    validation.delete_contract(ctx.store, project, table, actor=actor)
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
    page = validation.reports(ctx.store, project, table, limit=limit, cursor=cursor)
    return ReportPage(items=page.items, next_cursor=page.next_cursor)


@router.post("/{table}/files", status_code=201, openapi_extra=_RAW_BODY, responses=_FILE_REPLAYED)
async def ingest_file(
    request: Request,
    response: Response,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    table: str = TABLE,
    format: Literal["csv", "parquet", "jsonl"] | None = Query(
        default=None, description="The file's format; by default from its name or content."
    ),
    mode: Literal["append", "overwrite"] = Query(default="append"),
    strict: bool = Query(
        default=False,
        description="Refuse a file with a column of numbers but for a few values (a typo "
        "that would make a new column text); by default the commit's warnings name them.",
    ),
    column: list[DeclaredColumn] = Query(
        default=[],
        max_length=1000,
        description="NAME:TYPE (repeatable): read this column with this type instead of "
        "inferring it; a value that does not convert refuses the file, naming its rows.",
    ),
    content_disposition: str | None = Header(default=None, max_length=1000),
    idempotency_key: str | None = Header(
        default=None,
        alias="Idempotency-Key",
        description="Makes a retried upload land once: an upload under a key that already "
        "landed in this table gets that commit again (200, `replayed`) and writes nothing. "
        "The key stands for the file (`loopml ingest` sends `file-` and the SHA-256 of the "
        "file, the project, table and mode); the same key with other options is refused.",
        json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN.pattern, "maxLength": 200},
    ),
) -> TableCommit:
    """Ingest the raw request body (a CSV, Parquet or JSON Lines file) as one commit.

    The first file creates the table and fixes its schema; later ones must match it after
    safe casts, or are refused with 422 naming the columns and first offending rows.
    """
    if idempotency_key is not None:
        validate_idempotency_key(idempotency_key)
    commit = await _ingest_upload(
        ctx,
        project,
        table,
        request.stream(),
        format=format,
        mode=mode,
        filename=_filename_of(content_disposition),
        content_type=request.headers.get("content-type"),
        actor=actor,
        strict=strict,
        columns=column,
        key=idempotency_key,
    )
    if commit.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return commit


def _filename_of(content_disposition: str | None) -> str | None:
    """The client's file name, used only for its extension (never as a path)."""
    found = _FILENAME.search(content_disposition or "")
    return found.group(1) if found else None


async def _ingest_upload(
    ctx: AppContext,
    project: str,
    table: str,
    body: AsyncIterator[bytes],
    *,
    format: str | None,
    mode: str,
    filename: str | None,
    content_type: str | None,
    actor: str,
    strict: bool,
    columns: list[str],
    key: str | None = None,
) -> TableCommit:
    """Read a streamed upload with Arrow as it arrives (Parquet: once spooled) and commit
    it to the table; ``columns`` (``NAME:TYPE`` each) are read with those types."""
    validate_project_name(project)
    validate_table_name(table)
    write_mode = validate_write_mode(mode)
    declared = parse_declarations(columns)
    fmt = files.infer_format(format, filename=filename, content_type=content_type)
    limit = ctx.settings.server.max_upload_bytes
    folder = files.spool_folder(ctx.settings)
    chunks = pulled_pieces(body, anyio.lowlevel.current_token())

    def write(
        metadata: Mapping[str, str] | None = None,
        located: tuple[LakeTable, NativeLocation] | None = None,
    ) -> TableCommit:
        with files.read_stream(chunks, fmt, folder, limit, declared) as reader:
            return lake.ingest_arrow(
                ctx.store,
                ctx.artifacts,
                project,
                table,
                reader,
                mode=write_mode,
                actor=actor,
                lake_settings=ctx.settings.lake,
                commit_metadata=metadata,
                located=located,
                strict=strict,
                declared=[c.name for c in declared],
            )

    def work() -> TableCommit:
        if key is None:
            return write()
        # Checked before the body is read: a replay reads none of it.
        options = keyed_files.upload_options(fmt, write_mode, strict, columns)
        return keyed_files.ingest_once(
            ctx.store, ctx.artifacts, project, table, key, options, actor=actor, write=write
        )

    return await anyio.to_thread.run_sync(work)


@router.post("/{table}/records", status_code=201, openapi_extra=_RECORDS_BODY, responses=_REPLAYED)
async def append_records(
    request: Request,
    response: Response,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    table: str = TABLE,
    idempotency_key: str | None = Header(
        default=None,
        alias="Idempotency-Key",
        description="Makes a retried post land once: a post with a key already landed gets "
        "the first answer again (200, `replayed`). Use a new key (a UUID) for new records.",
        json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN.pattern, "maxLength": 200},
    ),
) -> RecordsCommit:
    """Append records (a JSON array of objects, or NDJSON) to a table.

    Posts arriving together share one commit (`lake.records_batch_rows`,
    `lake.records_batch_ms`); the answer comes once the records are durably committed, and
    each post lands whole or not at all. The first post creates the table and fixes its
    schema; a post that does not fit it is refused with 422 naming the columns.
    """
    batcher = get_running(request).records
    content_type = request.headers.get("content-type")
    validate_project_name(project)
    validate_table_name(table)
    records.media_kind(content_type)
    if idempotency_key is not None:
        validate_idempotency_key(idempotency_key)
    if batcher is None:
        raise ServiceUnavailableError(
            "record ingest is not running: the server has not started, or is stopping"
        )
    body = await request.body()
    post = await anyio.to_thread.run_sync(
        partial(
            records.read_post,
            body,
            content_type,
            key=idempotency_key,
            max_records=ctx.settings.lake.records_max_per_post,
            schema=batcher.schema_hint(project, table),
        )
    )
    result = await batcher.append(project, table, post, actor=actor)
    if result.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.post("/{table}/compact")
def compact_table(
    ctx: Ctx, actor: Actor, project: str = PROJECT, table: str = TABLE
) -> CompactReport:
    """Rewrite the table's small files into large ones, as a new version with the same rows."""
    return housekeeping.compact(ctx.store, ctx.artifacts, project, table, actor=actor)


@router.post("/{table}/vacuum")
def vacuum_table(
    request: Request,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    table: str = TABLE,
    retention_hours: int | None = Query(
        default=None,
        ge=0,
        le=MAX_RETENTION_HOURS,
        description="Free files that left the table longer ago than this; by default "
        "`lake.vacuum_retention_hours`. Versions that a run or a dataset snapshot "
        "references keep their files.",
    ),
    dry_run: bool = Query(default=False, description="Report what would be freed; free nothing."),
) -> VacuumReport:
    """Free the storage of old versions beyond the retention, except referenced versions
    (on a full disk too: the disk's reserve is released)."""
    with freeing_space(request, "a vacuum"):
        return housekeeping.vacuum(
            ctx.store,
            ctx.artifacts,
            project,
            table,
            retention_hours=retention_hours,
            dry_run=dry_run,
            actor=actor,
            settings=ctx.settings.lake,
        )
