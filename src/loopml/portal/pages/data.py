"""The data pages: a project's lake tables, datasets, contracts and streams (``/data``: each
stream with its consumer's last report and last error), one table
(``/data/{project}/tables/{table}``: schema, versions, column profiles, contract and its
reports) and the read-only SQL console (``/data/{project}/sql``).

They read what the API's table, dataset and SQL routes read, through the same functions
(``loopml.data``, ``loopml.data.sql``); reading needs the viewer role in the
project, as ``GET .../tables`` and ``POST .../sql`` do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from loopml.core.contracts import Contract, ValidationReport
from loopml.core.datasets import Dataset, DatasetVersion
from loopml.core.errors import LoopmlError, NotFoundError
from loopml.core.lake import LakeTable, TableCommit
from loopml.core.streams import Stream
from loopml.data import datasets, lake, sql, validation
from loopml.data.sql_formats import json_rows
from loopml.data.streams import service as stream_service
from loopml.faces.context import AppContext
from loopml.portal.pages._histograms import PROFILE_ROWS, ColumnChart, charts
from loopml.portal.pages._picking import pick, remember, remembered
from loopml.portal.viewer import PageRoute, Viewer, ViewerDep, context_of, read_only, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_DATASETS = 200
"""Datasets listed on the data page."""
HISTORY = 50
"""Table versions listed, newest first."""
REPORTS = 20
"""A contract's reports listed, newest first."""
SQL_PAGE = 100
"""Rows per page of the SQL console."""
SQL_TIMEOUT_S = 30.0
"""How long a console query may run."""
MAX_PAGE = 10_000
"""The last page the console pages to (a million rows in)."""


@dataclass
class DataView:
    """What the data page shows for one project."""

    project: str | None
    projects: list[str]
    tables: list[LakeTable] = field(default_factory=list)
    datasets: list[tuple[Dataset, DatasetVersion | None]] = field(default_factory=list)
    more_datasets: bool = False
    streams: list[Stream] = field(default_factory=list)


def _latest(store: Any, project: str, found: Dataset) -> DatasetVersion | None:
    try:
        return datasets.get_version(store, project, f"{found.name}@{found.latest_version}")
    except NotFoundError:
        return None


def gather(ctx: AppContext, viewer: Viewer, asked: str | None, last: str | None = None) -> DataView:
    """The project's tables and datasets with their latest version's split (blocking)."""
    project, seen = pick(ctx.store, viewer, asked, last)
    made = DataView(project=project, projects=seen)
    if project is None:
        return made
    made.tables = lake.list_tables(ctx.store, project)
    page = datasets.list_datasets(ctx.store, project, limit=MAX_DATASETS)
    made.datasets = [(d, _latest(ctx.store, project, d)) for d in page.items]
    made.more_datasets = page.next_cursor is not None
    made.streams = stream_service.list_streams(ctx.store, project)
    return made


@router.get("/data")
async def data_page(request: Request, viewer: ViewerDep, project: str | None = None) -> Response:
    """A project's tables, datasets (with their splits) and contracts."""
    ctx = context_of(request)
    last = remembered(request)
    view = await read_only(request, lambda: gather(ctx, viewer, project, last))
    return remember(render(request, "data.html", viewer, page="data", view=view), project)


@dataclass
class TableView:
    """What a table's page shows."""

    table: LakeTable
    history: list[TableCommit]
    charts: list[ColumnChart]
    sampled: int
    contract: Contract | None
    reports: list[ValidationReport]


def _contract(ctx: AppContext, project: str, table: str) -> Contract | None:
    try:
        return validation.get_contract(ctx.store, project, table)
    except NotFoundError:
        return None


def gather_table(ctx: AppContext, project: str, name: str) -> TableView:
    """A table's schema, versions, profiles over a bounded sample, contract and reports."""
    table = lake.get_table(ctx.store, ctx.artifacts, project, name)
    history = lake.history(ctx.store, ctx.artifacts, project, name, HISTORY)
    sample = lake.read_dataset(ctx.store, ctx.artifacts, project, name).head(PROFILE_ROWS)
    contract = _contract(ctx, project, name)
    reports = validation.reports(ctx.store, project, name, limit=REPORTS).items
    return TableView(table, history, charts(sample), sample.num_rows, contract, reports)


@router.get("/data/{project}/tables/{table}")
async def table_page(request: Request, viewer: ViewerDep, project: str, table: str) -> Response:
    """One table: schema, versions with rows added, column profiles, contract, reports."""
    viewer.require(project)
    ctx = context_of(request)
    view = await read_only(request, lambda: gather_table(ctx, project, table))
    return render(request, "data_table.html", viewer, page="data", project=project, view=view)


@dataclass
class SqlView:
    """One page of a console query, or why it has none."""

    query: str
    page: int
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    has_next: bool = False
    elapsed_ms: float = 0.0
    error: str | None = None


def run_page(ctx: AppContext, project: str, query: str, page: int) -> SqlView:
    """Run one page of ``query`` through the SQL service (``data.sql``: sandboxed,
    read-only, bounded in rows and time); a refusal raises, and the console shows it."""
    made = SqlView(query=query, page=page)
    result = sql.run(
        ctx.store,
        ctx.artifacts,
        project,
        query,
        limit=SQL_PAGE,
        offset=(page - 1) * SQL_PAGE,
        timeout_s=SQL_TIMEOUT_S,
    )
    made.columns = list(result.columns)
    made.rows = json_rows(result.table)
    made.has_next = result.next_offset is not None
    made.elapsed_ms = round(result.elapsed_s * 1000, 1)
    return made


@router.get("/data/{project}/sql")
async def sql_console(
    request: Request,
    viewer: ViewerDep,
    project: str,
    q: str = "",
    page: int = Query(default=1, ge=1, le=MAX_PAGE),
) -> Response:
    """The read-only SQL console: one SELECT over the project's tables, 100 rows a page;
    a refused or failing query is shown with its reason (422; 404 for an unknown table)."""
    viewer.require(project)
    ctx = context_of(request)
    if not q.strip():
        view = SqlView(query="", page=1)
        return render(
            request, "data_sql.html", viewer, page="data", project=project, view=view,
            page_size=SQL_PAGE,
        )  # fmt: skip
    status = 200
    try:
        view = await read_only(request, lambda: run_page(ctx, project, q, page))
    except LoopmlError as exc:
        if exc.status >= 500:
            raise
        view = SqlView(query=q, page=page, error=exc.message)
        status = exc.status
    if view.error is not None and status == 200:
        status = 422
    return render(
        request, "data_sql.html", viewer, status_code=status, page="data", project=project,
        view=view, page_size=SQL_PAGE,
    )  # fmt: skip
