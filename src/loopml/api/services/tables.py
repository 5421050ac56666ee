"""Lake tables for the API: the data layer, run in worker threads where it blocks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pyarrow as pa
from starlette.requests import Request

from loopml.api.schemas.data import ReportPage, TableHead
from loopml.core.contracts import Contract
from loopml.core.errors import ServiceUnavailableError
from loopml.core.housekeeping import CompactReport, VacuumReport
from loopml.core.ingest import RecordsCommit, validate_idempotency_key
from loopml.core.lake import (
    ColumnInfo,
    LakeTable,
    TableCommit,
    parse_declarations,
    validate_table_name,
)
from loopml.core.lake import validate_write_mode as validate_mode
from loopml.core.names import validate_project_name
from loopml.data import files, housekeeping, lake, records, validation
from loopml.data.schema import columns_of
from loopml.web.context import AppContext

_FILENAME = re.compile(r"""filename\*?=(?:UTF-8'')?"?([^";]{1,255})""", re.IGNORECASE)


def spool_folder(ctx: AppContext) -> Any:
    """Where uploads wait while they are read: under the server's home, never a client path."""
    return ctx.settings.home / "tmp" / "ingest"


def filename_of(content_disposition: str | None) -> str | None:
    """The client's file name, used only for its extension (never as a path)."""
    found = _FILENAME.search(content_disposition or "")
    return found.group(1) if found else None


async def ingest_upload(
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
    strict: bool = False,
    columns: list[str] | None = None,
) -> TableCommit:
    """Read a streamed upload with Arrow as it arrives (Parquet: once spooled) and commit
    it to the table; ``columns`` (``NAME:TYPE`` each) are read with those types."""
    validate_project_name(project)
    validate_table_name(table)
    write_mode = validate_mode(mode)
    declared = parse_declarations(columns or [])
    fmt = files.infer_format(format, filename=filename, content_type=content_type)
    limit = ctx.settings.server.max_upload_bytes
    chunks = _pulled(body, anyio.lowlevel.current_token())

    def work() -> TableCommit:
        with files.read_stream(chunks, fmt, spool_folder(ctx), limit, declared) as reader:
            return lake.ingest_arrow(
                ctx.store,
                ctx.artifacts,
                project,
                table,
                reader,
                mode=write_mode,
                actor=actor,
                lake_settings=ctx.settings.lake,
                strict=strict,
                declared=[c.name for c in declared],
            )

    return await anyio.to_thread.run_sync(work)


_PIECE = 1024 * 1024


def _pulled(body: AsyncIterator[bytes], token: anyio.lowlevel.EventLoopToken) -> Iterator[bytes]:
    """The chunks of an async body for a blocking reader, pulled from the event loop about
    a megabyte at a time (memory holds one piece). The socket delivers a body in chunks of
    tens of kilobytes; one trip to the event loop per chunk cost a 91 MB upload about a
    tenth of a second. Unlike ``blocking_chunks`` it may be iterated from any thread, not
    only the worker thread: Arrow's readers read ahead in threads of their own.
    """

    async def next_piece() -> bytes:
        parts: list[bytes] = []
        size = 0
        while size < _PIECE:
            try:
                chunk = await body.__anext__()
            except StopAsyncIteration:
                break
            parts.append(chunk)
            size += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    while piece := anyio.from_thread.run(next_piece, token=token):
        yield piece


async def append_records(
    ctx: AppContext,
    batcher: records.RecordBatcher | None,
    project: str,
    table: str,
    request: Request,
    *,
    content_type: str | None,
    key: str | None,
    actor: str,
) -> RecordsCommit:
    """Read a post of records (in a worker thread) and hand it to the app's batcher."""
    validate_project_name(project)
    validate_table_name(table)
    records.media_kind(content_type)
    if key is not None:
        validate_idempotency_key(key)
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
            key=key,
            max_records=ctx.settings.lake.records_max_per_post,
            schema=batcher.schema_hint(project, table),
        )
    )
    return await batcher.append(project, table, post, actor=actor)


def create(
    ctx: AppContext,
    project: str,
    name: str,
    description: str,
    columns: list[ColumnInfo] | None,
    actor: str,
) -> LakeTable:
    """Create a table (emits ``table.created``)."""
    return lake.create_table(
        ctx.store,
        ctx.artifacts,
        project,
        name,
        columns=columns,
        description=description,
        actor=actor,
    )


def list_(ctx: AppContext, project: str) -> list[LakeTable]:
    """A project's tables."""
    return lake.list_tables(ctx.store, project)


def get(ctx: AppContext, project: str, table: str) -> LakeTable:
    """One table, reconciled with its Delta log."""
    return lake.get_table(ctx.store, ctx.artifacts, project, table)


def history(ctx: AppContext, project: str, table: str, limit: int) -> list[TableCommit]:
    """A table's commits, newest first."""
    lake.get_table(ctx.store, ctx.artifacts, project, table)
    return lake.history(ctx.store, ctx.artifacts, project, table, limit)


def head(ctx: AppContext, project: str, table: str, n: int) -> TableHead:
    """The first ``n`` rows as JSON-ready values."""
    rows: pa.Table = lake.head(ctx.store, ctx.artifacts, project, table, n)
    return TableHead(columns=columns_of(rows.schema), rows=[_jsonable(r) for r in rows.to_pylist()])


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, float) and value != value:  # NaN is not JSON
            value = None
        out[key] = value
    return out


def delete(ctx: AppContext, project: str, table: str, actor: str) -> None:
    """Delete a table and free its files (emits ``table.deleted``)."""
    lake.delete_table(ctx.store, ctx.artifacts, project, table, actor=actor)


def compact(ctx: AppContext, project: str, table: str, actor: str) -> CompactReport:
    """Compact a table's small files (emits ``table.compacted``)."""
    return housekeeping.compact(ctx.store, ctx.artifacts, project, table, actor=actor)


def vacuum(
    ctx: AppContext,
    project: str,
    table: str,
    retention_hours: int | None,
    dry_run: bool,
    actor: str,
) -> VacuumReport:
    """Free old versions' files, keeping referenced versions (emits ``table.vacuumed``)."""
    hours = ctx.settings.lake.vacuum_retention_hours if retention_hours is None else retention_hours
    return housekeeping.vacuum(
        ctx.store,
        ctx.artifacts,
        project,
        table,
        retention_hours=hours,
        dry_run=dry_run,
        actor=actor,
    )


def set_contract(
    ctx: AppContext, project: str, table: str, contract: Contract, actor: str
) -> Contract:
    """Replace a table's validation contract (emits ``table.contract_updated``)."""
    return validation.set_contract(ctx.store, project, table, contract, actor=actor)


def get_contract(ctx: AppContext, project: str, table: str) -> Contract:
    """A table's validation contract; 404 when it has none."""
    return validation.get_contract(ctx.store, project, table)


def delete_contract(ctx: AppContext, project: str, table: str, actor: str) -> None:
    """Drop a table's validation contract."""
    validation.delete_contract(ctx.store, project, table, actor=actor)


def reports(
    ctx: AppContext, project: str, table: str, limit: int, cursor: str | None
) -> ReportPage:
    """A table's validation reports, newest first."""
    page = validation.reports(ctx.store, project, table, limit=limit, cursor=cursor)
    return ReportPage(items=page.items, next_cursor=page.next_cursor)
