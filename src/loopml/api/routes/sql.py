"""/api/v1/projects/{project}/sql: read-only SQL over a project's lake tables."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, ErrorBody, project_path
from loopml.api.schemas.sql import SqlColumn, SqlQuery, SqlResult
from loopml.data import sql
from loopml.data.sql_formats import (
    ARROW_MEDIA_TYPE,
    CSV_MEDIA_TYPE,
    arrow_bytes,
    csv_bytes,
    json_rows,
)
from loopml.data.warehouse import QueryResult
from loopml.faces.context import Ctx

NEXT_OFFSET_HEADER = "X-Loopml-Next-Offset"
ROW_COUNT_HEADER = "X-Loopml-Row-Count"

router = APIRouter(
    route_class=StrictJSONRoute, prefix="/api/v1/projects/{project}/sql", tags=["sql"]
)
PROJECT = project_path("The project whose tables the query reads.")
_PAGE_HEADERS = {
    ROW_COUNT_HEADER: {"description": "Rows in this page.", "schema": {"type": "integer"}},
    NEXT_OFFSET_HEADER: {
        "description": "The offset of the next page; absent on the last page.",
        "schema": {"type": "integer"},
    },
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {
        "description": "One page of rows: JSON, CSV or an Arrow IPC stream, per `format`.",
        "headers": _PAGE_HEADERS,
        "content": {
            CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
            ARROW_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    404: {"model": ErrorBody, "description": "No such project, or table (version)."},
    422: {
        "model": ErrorBody,
        "description": "Refused by the sandbox, failed (`validation_error`), or ran past its "
        "time limit (`query_timeout`).",
    },
}


@router.post("", response_model=SqlResult, responses=_RESPONSES)
def run_sql(body: SqlQuery, ctx: Ctx, project: str = PROJECT) -> Any:
    """Run one read-only SELECT over the project's tables (``churn``, ``churn@3``).

    The query cannot read files, URLs, settings or other projects; a refusal says what was
    refused. Answers one page of at most ``limit`` rows; ask for the next with
    ``offset = next_offset`` (also in the ``X-Loopml-Next-Offset`` header).
    """
    result = sql.run(
        ctx.store,
        ctx.artifacts,
        project,
        body.query,
        limit=body.limit,
        offset=body.offset,
        timeout_s=body.timeout_s,
    )
    headers = {ROW_COUNT_HEADER: str(result.table.num_rows)}
    if result.next_offset is not None:
        headers[NEXT_OFFSET_HEADER] = str(result.next_offset)
    if body.format == "csv":
        return Response(csv_bytes(result.table), media_type=CSV_MEDIA_TYPE, headers=headers)
    if body.format == "arrow":
        return Response(arrow_bytes(result.table), media_type=ARROW_MEDIA_TYPE, headers=headers)
    return Response(
        _as_json(result).model_dump_json(), media_type="application/json", headers=headers
    )


def _as_json(result: QueryResult) -> SqlResult:
    """A result page as the JSON body (see ``SqlResult`` for how values are written)."""
    return SqlResult(
        columns=[SqlColumn(name=name, type=kind) for name, kind in result.columns],
        rows=json_rows(result.table),
        row_count=result.table.num_rows,
        offset=result.offset,
        next_offset=result.next_offset,
        tables=result.tables,
        elapsed_ms=round(result.elapsed_s * 1000, 3),
    )
