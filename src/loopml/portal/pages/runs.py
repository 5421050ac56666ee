"""Runs: the table (``/runs``, paged, filtered and sorted in the database by the same search
as ``loopml runs list``), one run (``/runs/{project}/{run_id}``: params, metrics with their
curves, artifacts, tags) and a comparison of up to 20 runs (``/runs/compare``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.run_search import RunSearch
from loopml.core.runs import Experiment, LoggedModel, Run
from loopml.core.types import Artifact
from loopml.faces.context import MetadataStore
from loopml.portal.pages._picking import pick, remember, remembered
from loopml.portal.pages._run_query import (
    DEFAULT_PAGE,
    MAX_COMPARE,
    PAGE_SIZES,
    RunsQuery,
    chart,
    number,
    read_ids,
    read_query,
)
from loopml.portal.viewer import PageRoute, Viewer, ViewerDep, context_of, read_only, render
from loopml.storage import ArtifactStore
from loopml.train import tracking
from loopml.train.tracking import artifacts as run_artifacts

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_COLUMNS = 8
"""Metric columns in the table (the sorted one first, then by name)."""
MAX_POINTS = 1000
"""Points per curve on a run's charts (the first page of its history)."""
MAX_CHARTS = 20
"""Metrics charted on one run's page."""
COMPARE_CHARTS = 6
"""Metrics overlaid on the comparison by default (``metric=`` picks others)."""
ARTIFACTS = 100


@dataclass
class RunsTable:
    """What the runs table shows."""

    projects: list[str]
    project: str | None
    experiments: list[Experiment] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    next_cursor: str | None = None
    prev_cursor: str | None = None
    offset: int = 0
    parent: Run | None = None  # the run whose child runs the table lists


def _columns(runs: list[Run], sort: str) -> list[str]:
    keys = sorted({k for r in runs for k in (r.metrics or {})})
    first = sort.removeprefix("metrics.") if sort.startswith("metrics.") else None
    if first in keys:
        keys = [first] + [k for k in keys if k != first]
    return keys[:MAX_COLUMNS]


def gather_table(
    store: MetadataStore, viewer: Viewer, query: RunsQuery, last: str | None = None
) -> RunsTable:
    """One page of the table (blocking: run it in a worker thread)."""
    spec = query.spec()
    project, visible = pick(store, viewer, query.project, last)
    made = RunsTable(projects=visible, project=project)
    if project is None:
        return made
    made.experiments = tracking.list_experiments(store, project, limit=200).items
    if query.parent is not None:
        made.parent = tracking.get_run(store, project, query.parent)
    page = tracking.search_runs(store, project, spec)
    made.runs = page.items
    made.next_cursor = page.next_cursor
    made.prev_cursor = page.prev_cursor
    made.offset = page.offset
    made.columns = _columns(page.items, query.sort)
    return made


@router.get("/runs")
async def runs_table(request: Request, viewer: ViewerDep) -> Response:
    """The runs table."""
    store = context_of(request).store
    query = read_query(request.query_params)
    last = remembered(request)

    def gather() -> tuple[RunsTable, str | None]:
        # A search that does not parse keeps its form, filled as it was sent, above the
        # parser's message: the user corrects it there.
        try:
            return gather_table(store, viewer, query, last), None
        except ValidationError as exc:
            project, visible = pick(store, viewer, query.project, last)
            kept = RunsTable(projects=visible, project=project)
            if project is not None:
                kept.experiments = tracking.list_experiments(store, project, limit=200).items
            return kept, exc.message

    made, error = await read_only(request, gather)
    page = render(
        request,
        "runs.html",
        viewer,
        status_code=422 if error else 200,
        error=error,
        page="runs",
        view=made,
        query=query,
        page_sizes=PAGE_SIZES,
        default_page=DEFAULT_PAGE,
        max_compare=MAX_COMPARE,
    )
    return remember(page, query.project)


@dataclass
class RunView:
    """What one run's page shows."""

    run: Run
    charts: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]
    more_artifacts: bool
    models: list[LoggedModel]


def _artifact_rows(items: list[Artifact]) -> list[dict[str, Any]]:
    """The table's rows: an ``Artifact``'s key is already its path in the run."""
    return [{"path": a.key, "size": a.size, "modified": a.modified} for a in items]


def gather_run(
    store: MetadataStore, artifacts: ArtifactStore, project: str, run_id: str
) -> RunView:
    """One run with its curves, files and models (blocking)."""
    run = tracking.get_run(store, project, run_id)
    keys = sorted(run.metrics or {})[:MAX_CHARTS]
    charts = [
        chart(
            key,
            [run.name],
            [tracking.metric_history(store, project, run_id, key, limit=MAX_POINTS).items],
        )
        for key in keys
    ]
    files = run_artifacts.list_(store, artifacts, project, run_id, limit=ARTIFACTS)
    return RunView(
        run=run,
        charts=charts,
        artifacts=_artifact_rows(files.items),
        more_artifacts=files.next_cursor is not None,
        models=run_artifacts.list_models(store, project, run_id),
    )


@router.get("/runs/compare")
async def compare(request: Request, viewer: ViewerDep) -> Response:
    """Up to 20 runs side by side: params (differing values marked), latest metrics and
    their curves overlaid."""
    params = request.query_params
    project = params.get("project", "").strip() or "default"
    viewer.require(project)
    ids = read_ids(params)
    chosen = [m for m in params.getlist("metric") if m][:MAX_CHARTS]
    store = context_of(request).store
    view = await read_only(request, lambda: gather_compare(store, project, ids, chosen))
    return render(request, "runs_compare.html", viewer, page="runs", project=project, **view)


def _param_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per param: each run's value, and whether they differ."""
    rows = []
    for key in sorted({k for r in runs for k in (r.params or {})}):
        values = [(r.params or {}).get(key) for r in runs]
        rows.append({"key": key, "values": values, "differs": len(set(values)) > 1})
    return rows


def _metric_rows(runs: list[Run], keys: list[str]) -> list[dict[str, Any]]:
    """One row per metric: each run's latest value."""
    return [{"key": k, "values": [number((r.metrics or {}).get(k)) for r in runs]} for k in keys]


def _histories(store: MetadataStore, project: str, runs: list[Run], key: str) -> list[Any]:
    return [
        tracking.metric_history(store, project, r.id, key, limit=MAX_POINTS).items for r in runs
    ]


def gather_compare(
    store: MetadataStore, project: str, ids: list[str], chosen: list[str]
) -> dict[str, Any]:
    """The runs (in the order asked), their param rows, metric rows and charts (blocking)."""
    spec = RunSearch.model_validate({"run_ids": ids, "lifecycle": "all", "limit": MAX_COMPARE})
    found = {r.id: r for r in tracking.search_runs(store, project, spec).items}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFoundError(
            f"run {missing[0]!r} not found in project {project!r}",
            details={"project": project, "run_id": missing[0]},
        )
    runs = [found[i] for i in ids]
    param_rows = _param_rows(runs)
    metric_keys = sorted({k for r in runs for k in (r.metrics or {})})
    metric_rows = _metric_rows(runs, metric_keys)
    charted = [k for k in chosen if k in metric_keys] or metric_keys[:COMPARE_CHARTS]
    labels = [f"{r.name} ({r.id[:8]})" for r in runs]
    charts = [chart(key, labels, _histories(store, project, runs, key)) for key in charted]
    return {
        "runs": runs,
        "param_rows": param_rows,
        "metric_rows": metric_rows,
        "metric_keys": metric_keys,
        "charted": charted,
        "charts": charts,
        "only_differing": False,
    }


@router.get("/runs/{project}/{run_id}")
async def run_page(request: Request, viewer: ViewerDep, project: str, run_id: str) -> Response:
    """One run."""
    viewer.require(project)
    ctx = context_of(request)
    view = await read_only(request, lambda: gather_run(ctx.store, ctx.artifacts, project, run_id))
    return render(request, "run.html", viewer, page="runs", project=project, view=view)
