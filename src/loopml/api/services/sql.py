"""The warehouse behind the API: one project's lake tables, one sandboxed query."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml import projects
from loopml.api.context import AppContext
from loopml.api.schemas.sql import SqlColumn, SqlQuery, SqlResult
from loopml.data import lake
from loopml.data.sql_formats import json_rows
from loopml.data.warehouse import QueryResult, run_query

if TYPE_CHECKING:
    import pyarrow.dataset as pads


def run(ctx: AppContext, project: str, body: SqlQuery) -> QueryResult:
    """Run ``body.query`` over ``project``'s tables (and no other project's).

    Raises:
        NotFoundError: no such project, or a table (version) the query names.
        ValidationError: the query was refused or failed.
        QueryTimeoutError: it ran past ``body.timeout_s``.
    """
    projects.get(ctx.store, project)

    def resolve(table: str, version: int | None) -> pads.Dataset:
        return lake.read_dataset(ctx.store, ctx.artifacts, project, table, version)

    return run_query(
        body.query, resolve, limit=body.limit, offset=body.offset, timeout_s=body.timeout_s
    )


def as_json(result: QueryResult) -> SqlResult:
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
